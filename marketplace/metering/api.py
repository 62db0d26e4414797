"""The node agent's usage endpoint: POST /api/agent/usage/ (Authorization: Agent cfa_...).

It lives in the marketplace (which owns metering) but authenticates exactly like the agent's
register and heartbeat (inventory.agent_api), and answers in the API's one error shape.
Parsing is plain json + the service's own checks, not a DRF serializer: a batch has up to 5,000
samples and DRF's per-field machinery would cost more than storing them.
"""

import json

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.agent_api import IsNodeAgent, NodeAgentUsageAuthentication
from marketplace.metering.services import MAX_BATCH_SAMPLES, usage_samples_ingest

# 5,000 samples of ~300 bytes, with room for whitespace.
MAX_USAGE_BODY_BYTES = 4 * 1024 * 1024


class UsageBatchTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"The request body is larger than {MAX_USAGE_BODY_BYTES} bytes; send smaller batches."
    default_code = "too_large"


_SAMPLES = inline_serializer(
    "UsageSample",
    many=True,
    fields={
        "sample_id": serializers.UUIDField(help_text="Chosen by the agent; send the same id again when retrying."),
        "device": serializers.IntegerField(help_text="The device id (from the register answer's `devices`)."),
        "window_start": serializers.DateTimeField(),
        "window_end": serializers.DateTimeField(
            help_text="After window_start, at most 3600 s later, not in the future."
        ),
        "busy_seconds": serializers.FloatField(help_text="0 .. the window's length"),
        "utilization_percent": serializers.FloatField(help_text="0 .. 100"),
        "memory_used_mib": serializers.IntegerField(),
        "power_watts": serializers.FloatField(),
    },
)


class AgentUsageApi(APIView):
    authentication_classes = [NodeAgentUsageAuthentication]
    permission_classes = [IsNodeAgent]

    @extend_schema(
        request=inline_serializer("UsageBatch", {"samples": _SAMPLES}),
        responses={
            200: inline_serializer(
                "UsageIngested",
                {
                    "received": serializers.IntegerField(),
                    "new": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                },
            ),
            400: OpenApiResponse(
                description="malformed batch, another node's device, a window in the future: nothing stored"
            ),
            401: None,
            413: None,
        },
        summary=f"Node agent: a batch of up to {MAX_BATCH_SAMPLES} usage samples (idempotent)",
    )
    def post(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_USAGE_BODY_BYTES:
            raise UsageBatchTooLarge()
        body = request.body
        if len(body) > MAX_USAGE_BODY_BYTES:
            raise UsageBatchTooLarge()
        try:
            text = body.decode("utf-8")
            payload = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise exceptions.ValidationError({"samples": ['The body must be JSON: {"samples": [...]}.']}) from None
        if not isinstance(payload, dict) or set(payload) != {"samples"}:
            raise exceptions.ValidationError({"samples": ["The body must be an object with one field, samples."]})
        # A refused batch (UsageBatchInvalid) answers 400 through config.api.DOMAIN_ERRORS.
        result = usage_samples_ingest(node_id=request.auth.node_id, samples=payload["samples"], body_json=text)
        return Response({"received": result.received, "new": result.new, "duplicates": result.duplicates})
