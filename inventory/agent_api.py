"""Node-agent REST endpoints (mounted under /api/agent/).

Two audiences:

* the node agent, authenticated by its node's key: `Authorization: Agent cfa_...`
  (POST register/, POST heartbeat/);
* the provider, authenticated like the rest of the API (session or `Token`), acting for
  request.organization with the `manage_inventory` permission: create / list / revoke a node's agent
  keys, and confirm a mismatch is resolved. Another organization's node or key is a 404.

Errors use the API's one shape (config.api): {"error": {"code", "message", "fields"}}.
"""

import re

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import authentication, exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import user_can
from inventory.agent_services import (
    MAX_BIGINT,
    MAX_BULK_AGENT_KEYS,
    NodeAgentIdentity,
    node_agent_authenticate,
    node_agent_heartbeat,
    node_agent_identify,
    node_agent_register,
    node_agent_token_create,
    node_agent_token_list,
    node_agent_token_revoke,
    node_agent_tokens_create_bulk,
    node_mismatch_resolve,
    nodes_without_agent_key,
    organization_agent_token_get,
    organization_node_get,
)
from inventory.models import Node, NodeAgentToken
from inventory.selectors import node_devices

# A report is a few hundred bytes; anything far larger is a broken or hostile client.
MAX_AGENT_BODY_BYTES = 16 * 1024
MAX_SOFTWARE_VERSIONS = 32
# Printable text without control characters (names and versions end up on web pages and in logs).
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_SOFTWARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$")


# ---------------------------------------------------------------------------------------------
# Authentication of the agent
# ---------------------------------------------------------------------------------------------


class NodeAgentAuthentication(authentication.BaseAuthentication):
    """`Authorization: Agent cfa_...` - the request acts as the node agent of the key's node.

    request.user is anonymous; request.auth is the NodeAgentToken (with its node).
    """

    keyword = "Agent"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Send the header as 'Authorization: Agent <key>'."))
        found = self.lookup(key=header[1])
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked agent key."))
        return AnonymousUser(), found

    def lookup(self, *, key: str):
        return node_agent_authenticate(key=key)

    def authenticate_header(self, request):
        return self.keyword


class NodeAgentUsageAuthentication(NodeAgentAuthentication):
    """The same header for the usage endpoint, with request.auth a NodeAgentIdentity (token and node
    ids) from node_agent_identify's short per-process cache: see AGENT_KEY_CACHE_SECONDS."""

    def lookup(self, *, key: str):
        return node_agent_identify(key=key)


class NodeAgentAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = NodeAgentAuthentication
    match_subclasses = True
    name = "NodeAgentKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "The node's agent key: `Authorization: Agent cfa_...`",
        }


class IsNodeAgent(permissions.BasePermission):
    message = "Authenticate the node agent with 'Authorization: Agent <key>'."

    def has_permission(self, request, view):
        return isinstance(request.auth, (NodeAgentToken, NodeAgentIdentity))


class AgentApiView(APIView):
    authentication_classes = [NodeAgentAuthentication]
    permission_classes = [IsNodeAgent]

    def initial(self, request, *args, **kwargs):
        # Refuse an oversized body before anything parses it (after authentication, so that a
        # caller without a key learns nothing else).
        super().initial(request, *args, **kwargs)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_AGENT_BODY_BYTES or len(request.body) > MAX_AGENT_BODY_BYTES:
            raise PayloadTooLarge()


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = format_lazy(gettext_lazy("The request body is larger than {limit} bytes."), limit=MAX_AGENT_BODY_BYTES)
    default_code = "too_large"


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a misspelt field is an error rather than silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [_("Unknown field.")] for name in unknown[:10]})
        return super().to_internal_value(data)


def _printable(value: str) -> str:
    if not _PRINTABLE.match(value):
        raise serializers.ValidationError(_("Control characters are not allowed."))
    return value


class NodeStateSerializer(serializers.Serializer):
    """What the agent (and the provider) learn back about the node."""

    id = serializers.IntegerField()
    hostname = serializers.CharField()
    status = serializers.CharField()
    flagged = serializers.BooleanField(source="is_flagged")
    mismatch_reason = serializers.CharField()
    listed_model = serializers.CharField(source="accelerator_model.name")
    listed_card_count = serializers.IntegerField(source="card_count")
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)


class AgentDeviceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    index = serializers.IntegerField(help_text="The card's index on the node (as nvidia-smi / npu-smi number them).")


# ---------------------------------------------------------------------------------------------
# Agent endpoints
# ---------------------------------------------------------------------------------------------


class AgentRegisterApi(AgentApiView):
    @extend_schema_serializer(component_name="AgentReport")
    class InputSerializer(StrictSerializer):
        model_name = serializers.CharField(max_length=200, validators=[_printable])
        card_count = serializers.IntegerField(min_value=1, max_value=64)
        memory_gb = serializers.IntegerField(min_value=1, max_value=4096, required=False, allow_null=True)
        driver_version = serializers.CharField(
            max_length=100, allow_blank=True, required=False, default="", validators=[_printable]
        )
        software_versions = serializers.DictField(
            child=serializers.CharField(max_length=64, allow_blank=True, validators=[_printable]),
            required=False,
            default=dict,
        )

        def validate_software_versions(self, value: dict) -> dict:
            if len(value) > MAX_SOFTWARE_VERSIONS:
                raise serializers.ValidationError(_("At most %(limit)d entries.") % {"limit": MAX_SOFTWARE_VERSIONS})
            bad = [name for name in value if not _SOFTWARE_NAME.match(name)]
            if bad:
                raise serializers.ValidationError(
                    _("Names are up to 64 letters, digits and _ . + - (got %(name)r).") % {"name": bad[0][:70]}
                )
            return value

    @extend_schema_serializer(component_name="AgentRegistered")
    class OutputSerializer(serializers.Serializer):
        node = NodeStateSerializer()
        heartbeat_timeout_seconds = serializers.IntegerField()
        devices = AgentDeviceSerializer(many=True, help_text="The node's cards: usage samples name them by id.")

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, 400: OpenApiResponse(description="invalid report"), 401: None, 409: None},
        summary="Node agent: register the hardware it detects",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node = node_agent_register(token=request.auth, report=serializer.validated_data)
        return Response(
            self.OutputSerializer(
                {
                    "node": node,
                    "heartbeat_timeout_seconds": settings.NODE_HEARTBEAT_TIMEOUT_SECONDS,
                    "devices": node_devices(node_id=node.pk),
                }
            ).data
        )


class AgentHeartbeatApi(AgentApiView):
    @extend_schema_serializer(component_name="AgentHeartbeat")
    class InputSerializer(StrictSerializer):
        """A heartbeat carries no data; the agent registers again when what it detects changes."""

    @extend_schema(
        request=InputSerializer,
        responses={200: NodeStateSerializer, 401: None, 409: OpenApiResponse(description="register first")},
        summary="Node agent: I am alive",
    )
    def post(self, request):
        data = request.data if request.data else {}
        self.InputSerializer(data=data).is_valid(raise_exception=True)
        node = node_agent_heartbeat(token=request.auth)
        return Response(NodeStateSerializer(node).data)


# ---------------------------------------------------------------------------------------------
# Provider endpoints
# ---------------------------------------------------------------------------------------------


class ProviderAgentApiView(APIView):
    def organization_for_inventory(self, request):
        organization = getattr(request, "organization", None)
        if not user_can(user=request.user, organization=organization, action="manage_inventory"):
            raise exceptions.PermissionDenied(_("You may not manage this organization's inventory."))
        return organization

    def node_or_404(self, request, node_id: int) -> Node:
        node = organization_node_get(organization=self.organization_for_inventory(request), node_id=node_id)
        if node is None:
            raise exceptions.NotFound(_("No such node in your organization."))
        return node


class AgentKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    node = serializers.IntegerField(source="node_id")
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class NodeAgentKeysApi(ProviderAgentApiView):
    @extend_schema_serializer(component_name="AgentKeyCreated")
    class CreatedSerializer(AgentKeySerializer):
        key = serializers.CharField(help_text="Shown once; only a hash is stored.")

    @extend_schema(responses=AgentKeySerializer(many=True), summary="A node's agent keys (prefixes only)")
    def get(self, request, node_id: int):
        node = self.node_or_404(request, node_id)
        tokens = node_agent_token_list(node=node)
        return Response(AgentKeySerializer(tokens, many=True).data)

    @extend_schema(request=None, responses={201: CreatedSerializer}, summary="Create an agent key (shown once)")
    def post(self, request, node_id: int):
        node = self.node_or_404(request, node_id)
        if node.status == Node.Status.RETIRED:
            raise exceptions.ValidationError({"node": [_("A retired node takes no agent keys.")]})
        token, key = node_agent_token_create(node=node)
        data = AgentKeySerializer(token).data
        data["key"] = key
        return Response(data, status=status.HTTP_201_CREATED)


class AgentKeyIssuedSerializer(serializers.Serializer):
    node = serializers.IntegerField(help_text="The node's id.")
    hostname = serializers.CharField()
    token = serializers.CharField(help_text="The agent key, shown once; only a hash is stored.")


class AgentKeysBulkApi(ProviderAgentApiView):
    """Agent keys for many nodes at once (a provider who imported 50 nodes clicks once)."""

    @extend_schema_serializer(component_name="AgentKeysBulkRequest")
    class InputSerializer(StrictSerializer):
        nodes = serializers.ListField(
            child=serializers.IntegerField(min_value=1, max_value=MAX_BIGINT), required=False, max_length=MAX_BULK_AGENT_KEYS, allow_empty=False,
            help_text="Node ids of your organization.",
        )
        cluster = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, required=False, help_text="Every node of this cluster without a working key.")
        site = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, required=False, help_text="Every node of this site without a working key.")

        def validate(self, data):
            if len([name for name in ("nodes", "cluster", "site") if name in data]) != 1:
                raise serializers.ValidationError({"nodes": [_("Give exactly one of nodes, cluster or site.")]})
            return data

    @extend_schema_serializer(component_name="AgentKeysBulkCreated")
    class OutputSerializer(serializers.Serializer):
        count = serializers.IntegerField()
        keys = AgentKeyIssuedSerializer(many=True)

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, 400: OpenApiResponse(description="unknown or retired nodes, or nothing to do; nothing created")},
        summary="Create agent keys for many nodes at once (all or nothing; shown once)",
    )
    def post(self, request):
        organization = self.organization_for_inventory(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scope = data.validated_data
        if "nodes" in scope:
            node_ids = scope["nodes"]
        else:
            where = {"cluster_id": scope["cluster"]} if "cluster" in scope else {"site_id": scope["site"]}
            node_ids = list(nodes_without_agent_key(organization=organization, **where).values_list("pk", flat=True))
            if not node_ids:
                field = "cluster" if "cluster" in scope else "site"
                message = (_("No node of this cluster in your organization lacks an agent key.") if field == "cluster"
                           else _("No node of this site in your organization lacks an agent key."))
                raise exceptions.ValidationError({field: [message]})
        keys = node_agent_tokens_create_bulk(organization=organization, node_ids=node_ids)
        payload = {"count": len(keys), "keys": [{"node": node.pk, "hostname": node.hostname, "token": key} for node, key in keys]}
        return Response(self.OutputSerializer(payload).data, status=status.HTTP_201_CREATED)


class AgentKeyRevokeApi(ProviderAgentApiView):
    @extend_schema(request=None, responses=AgentKeySerializer, summary="Revoke an agent key (idempotent)")
    def post(self, request, token_id: int):
        token = organization_agent_token_get(organization=self.organization_for_inventory(request), token_id=token_id)
        if token is None:
            raise exceptions.NotFound(_("No such agent key in your organization."))
        token = node_agent_token_revoke(token=token)
        return Response(AgentKeySerializer(token).data)


class NodeMismatchResolveApi(ProviderAgentApiView):
    @extend_schema(
        request=None,
        responses={200: NodeStateSerializer, 400: OpenApiResponse(description="still mismatched")},
        summary="Confirm a node's mismatch is resolved (re-checks the agent's last report)",
    )
    def post(self, request, node_id: int):
        node = self.node_or_404(request, node_id)
        node = node_mismatch_resolve(node=node, actor=request.user)
        return Response(NodeStateSerializer(node).data)
