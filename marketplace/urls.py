"""REST API routes of the marketplace (mounted under /api/).

The search lives at /api/market/offers/: /api/offers/ is inventory's (providers manage their own offers there)."""

from django.urls import path

from marketplace import api
from marketplace.metering.api import AgentUsageApi
from marketplace.provisioning.api import AgentAssignmentReportApi, AgentAssignmentsApi

urlpatterns = [
    path("market/offers/", api.OfferSearchApi.as_view(), name="offer-search"),
    path("market/offers/<int:offer_id>/", api.OfferDetailApi.as_view(), name="offer-detail"),
    path("quotes/", api.QuoteApi.as_view(), name="quote"),
    path("launch-templates/", api.LaunchTemplateListApi.as_view(), name="launch-templates"),
    path("reservations/", api.ReservationListCreateApi.as_view(), name="reservations"),
    path("reservations/<int:reservation_id>/", api.ReservationDetailApi.as_view(), name="reservation-detail"),
    path("reservations/<int:reservation_id>/cancel/", api.ReservationCancelApi.as_view(), name="reservation-cancel"),
    path("reservations/<int:reservation_id>/release/", api.ReservationReleaseApi.as_view(), name="reservation-release"),
    path("reservations/<int:reservation_id>/extend/", api.ReservationExtendApi.as_view(), name="reservation-extend"),
    # The node agent's usage samples, beside its register/ and heartbeat/ (inventory.agent_urls).
    path("agent/usage/", AgentUsageApi.as_view(), name="agent-usage"),
    # Its desired state (what to run / stop) and its reports on it (marketplace.provisioning).
    path("agent/assignments/", AgentAssignmentsApi.as_view(), name="agent-assignments"),
    path("agent/assignments/<int:assignment_id>/report/", AgentAssignmentReportApi.as_view(), name="agent-assignment-report"),
]
