"""Node-agent API routes (mounted under /api/agent/, names in the "api" namespace).

Agent (Authorization: Agent <key>):      POST register/   POST heartbeat/   (POST usage/: marketplace.metering.api)
Provider (session or API token):         GET|POST nodes/<id>/keys/   POST keys/<id>/revoke/
                                         POST keys/bulk/ (many nodes at once)
                                         POST nodes/<id>/mismatch/resolve/
"""

from django.urls import path

from inventory.agent_api import (
    AgentHeartbeatApi,
    AgentKeyRevokeApi,
    AgentKeysBulkApi,
    AgentRegisterApi,
    NodeAgentKeysApi,
    NodeMismatchResolveApi,
)

urlpatterns = [
    path("register/", AgentRegisterApi.as_view(), name="agent-register"),
    path("heartbeat/", AgentHeartbeatApi.as_view(), name="agent-heartbeat"),
    path("nodes/<int:node_id>/keys/", NodeAgentKeysApi.as_view(), name="agent-node-keys"),
    path("keys/bulk/", AgentKeysBulkApi.as_view(), name="agent-keys-bulk"),
    path("keys/<int:token_id>/revoke/", AgentKeyRevokeApi.as_view(), name="agent-key-revoke"),
    path("nodes/<int:node_id>/mismatch/resolve/", NodeMismatchResolveApi.as_view(), name="agent-node-mismatch-resolve"),
]
