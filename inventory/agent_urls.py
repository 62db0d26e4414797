"""Node-agent API routes (mounted under /api/agent/)."""

urlpatterns = []
