"""The node agent's provisioning endpoints (contract: GET assignments/, POST assignments/<id>/report/).

Authenticated like register/heartbeat/usage (`Authorization: Agent <key>`, one node per key); another
node's assignment is a 404; errors in the API's one shape (config.api).
"""

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response

from inventory.agent_api import AgentApiView, StrictSerializer
from marketplace.models import NodeAssignment
from marketplace.provisioning.selectors import node_assignment_list
from marketplace.provisioning.services import MAX_REASON_CHARS, assignment_report


class AssignmentDeviceSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The card's index on the node.")
    serial = serializers.CharField(help_text="As the agent reported it (may be empty).")


class AssignmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reservation = serializers.IntegerField(source="reservation_id")
    desired = serializers.ChoiceField(choices=NodeAssignment.Desired.choices)
    state = serializers.ChoiceField(choices=NodeAssignment.State.choices, help_text="the last reported state, as the server knows it")
    stack = serializers.CharField(help_text="the software stack of the node's cards (cuda, rocm, cann, ...)")
    devices = AssignmentDeviceSerializer(many=True, help_text="exactly the cards to give the workload")
    image = serializers.CharField()
    ssh_public_keys = serializers.ListField(child=serializers.CharField(), help_text="authorized_keys lines")
    ssh_port = serializers.IntegerField(help_text="the host port the workload's SSH server listens on")
    deadline = serializers.DateTimeField(help_text="report running before this, or the boot counts as failed")
    ends_at = serializers.DateTimeField()


class AgentAssignmentsApi(AgentApiView):
    @extend_schema_serializer(component_name="AgentAssignments")
    class OutputSerializer(serializers.Serializer):
        node = serializers.IntegerField()
        poll_seconds = serializers.IntegerField()
        assignments = AssignmentSerializer(many=True)

    @extend_schema(
        responses={200: OutputSerializer, 401: None},
        summary="Node agent: the workloads this node is to run or to stop (desired state)",
    )
    def get(self, request):
        node_id = request.auth.node_id
        return Response(self.OutputSerializer({
            "node": node_id, "poll_seconds": settings.AGENT_POLL_SECONDS, "assignments": node_assignment_list(node_id=node_id),
        }).data)


class AgentAssignmentReportApi(AgentApiView):
    @extend_schema_serializer(component_name="AgentAssignmentReport")
    class InputSerializer(StrictSerializer):
        class DeviceHealthSerializer(StrictSerializer):
            index = serializers.IntegerField(min_value=0, max_value=1023)
            healthy = serializers.BooleanField()

        state = serializers.ChoiceField(choices=[NodeAssignment.State.RUNNING, NodeAssignment.State.FAILED, NodeAssignment.State.STOPPED])
        # Control characters (a container runtime's multi-line error) are not refused - a node must always be
        # able to report a failure - but flattened to spaces by the service.
        reason = serializers.CharField(max_length=MAX_REASON_CHARS, required=False, allow_blank=True, default="", trim_whitespace=True)
        devices = DeviceHealthSerializer(many=True, required=False, default=list)

        def validate_devices(self, value):
            if len(value) > 64:
                raise serializers.ValidationError("At most 64 devices.")
            indices = [item["index"] for item in value]
            if len(indices) != len(set(indices)):
                raise serializers.ValidationError("Each device index once.")
            return value

        def validate(self, data):
            if data["state"] == NodeAssignment.State.FAILED and not data["reason"].strip():
                raise serializers.ValidationError({"reason": ["Say why the workload failed (shown to the buyer)."]})
            return data

    @extend_schema_serializer(component_name="AgentAssignmentReported")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        state = serializers.CharField()
        desired = serializers.CharField()
        reservation_status = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer, 400: OpenApiResponse(description="malformed report"), 401: None,
            404: OpenApiResponse(description="no such assignment on this node"),
            409: OpenApiResponse(description="assignment_closed: the server gave up on it; stop the workload"),
        },
        summary="Node agent: report an assignment running, failed or stopped (idempotent)",
    )
    def post(self, request, assignment_id: int):
        arrived = timezone.now()  # the server's clock: billing starts at the arrival of the last running report
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = assignment_report(
            node_id=request.auth.node_id, assignment_id=assignment_id, state=data["state"], reason=data["reason"],
            devices=data["devices"], at=arrived,
        )
        return Response(self.OutputSerializer({
            "id": result.assignment.pk, "state": result.assignment.state, "desired": result.assignment.desired,
            "reservation_status": result.reservation_status,
        }).data)
