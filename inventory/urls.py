"""REST API routes of inventory (mounted under /api/)."""

from django.urls import include, path

urlpatterns = [
    path("agent/", include("inventory.agent_urls")),
]
