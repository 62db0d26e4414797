"""REST API routes of inventory (mounted under /api/)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from inventory import api

router = SimpleRouter()
router.register("sites", api.SiteViewSet, basename="site")
router.register("clusters", api.ClusterViewSet, basename="cluster")
router.register("nodes", api.NodeViewSet, basename="node")
router.register("offers", api.OfferViewSet, basename="offer")
router.register("maintenance-windows", api.MaintenanceWindowViewSet, basename="maintenance-window")

urlpatterns = [
    path("agent/", include("inventory.agent_urls")),
    # Before the router, so "import" is not read as a node id.
    path("nodes/import/", api.NodeImportApi.as_view(), name="node-import"),
    *router.urls,
]
