"""REST API routes of the marketplace (mounted under /api/)."""

urlpatterns = []
