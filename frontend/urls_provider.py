"""Provider pages, mounted at /provider/ (names: frontend:provider-...)."""

from django.urls import path

from frontend.views import billing, dashboards, provider

urlpatterns = [
    path("", provider.home, name="provider-home"),
    path("earnings/", billing.provider_earnings, name="provider-earnings"),
    path("dashboard/", dashboards.provider, name="provider-dashboard"),
    path("sites/new/", provider.site_create, name="provider-site-create"),
    path("sites/<int:pk>/", provider.site_detail, name="provider-site"),
    path("sites/<int:pk>/edit/", provider.site_edit, name="provider-site-edit"),
    path("sites/<int:pk>/retire/", provider.site_retire, name="provider-site-retire"),
    path("sites/<int:site_pk>/clusters/new/", provider.cluster_create, name="provider-cluster-create"),
    path("clusters/<int:pk>/", provider.cluster_detail, name="provider-cluster"),
    path("clusters/<int:pk>/edit/", provider.cluster_edit, name="provider-cluster-edit"),
    path("clusters/<int:cluster_pk>/nodes/new/", provider.node_create, name="provider-node-create"),
    path("clusters/<int:cluster_pk>/offers/new/", provider.offer_create, name="provider-offer-create"),
    path("clusters/<int:cluster_pk>/maintenance/", provider.maintenance, name="provider-maintenance"),
    path("nodes/import/", provider.nodes_import, name="provider-nodes-import"),
    path("nodes/import/template.csv", provider.nodes_import_template, name="provider-nodes-import-template"),
    path("nodes/<int:pk>/", provider.node_detail, name="provider-node"),
    path("agent-keys/", provider.agent_keys_bulk, name="provider-agent-keys-bulk"),
    path("nodes/<int:pk>/agent-keys/", provider.node_agent_key_create, name="provider-node-agent-key-create"),
    path("nodes/<int:pk>/agent-keys/<int:token_pk>/revoke/", provider.node_agent_key_revoke, name="provider-node-agent-key-revoke"),
    path("nodes/<int:pk>/mismatch/resolve/", provider.node_mismatch_resolve, name="provider-node-mismatch-resolve"),
    path("nodes/<int:pk>/edit/", provider.node_edit, name="provider-node-edit"),
    path("nodes/<int:pk>/retire/", provider.node_retire, name="provider-node-retire"),
    path("offers/<int:pk>/edit/", provider.offer_edit, name="provider-offer-edit"),
    path("offers/<int:pk>/retire/", provider.offer_retire, name="provider-offer-retire"),
    path("maintenance/<int:pk>/cancel/", provider.maintenance_cancel, name="provider-maintenance-cancel"),
]
