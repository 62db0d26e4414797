"""REST endpoints of accounts: who am I, my SSH public keys, my notifications."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Notification, SshPublicKey
from accounts.notifications import notification_list, notification_mark_read
from accounts.selectors import membership_get, ssh_key_list
from accounts.services import ssh_key_add, ssh_key_revoke
from config.api import Pagination


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        organization = serializers.CharField(allow_null=True)
        organization_kind = serializers.CharField(allow_null=True)
        role = serializers.CharField(allow_null=True)

    @extend_schema(responses=OutputSerializer, summary="The caller and the organization it acts for")
    def get(self, request):
        organization = getattr(request, "organization", None)
        membership = membership_get(user=request.user, organization=organization)
        return Response(
            self.OutputSerializer(
                {
                    "email": request.user.email,
                    "organization": organization.name if organization else None,
                    "organization_kind": organization.kind if organization else None,
                    "role": membership.role if membership else None,
                }
            ).data
        )


# ---------------------------------------------------------------------------------------------
# SSH public keys: the caller's own (a key belongs to a person, not to an organization), so another
# user's key answers 404 whatever organization the caller acts for.
# ---------------------------------------------------------------------------------------------


class SshKeyOutputSerializer(serializers.ModelSerializer):
    public_key = serializers.CharField(source="authorized_keys_line", help_text="The key as one authorized_keys line.")
    is_active = serializers.BooleanField(help_text="False once revoked: the key is no longer given to machines.")

    class Meta:
        model = SshPublicKey
        fields = ["id", "name", "key_type", "bits", "fingerprint", "comment", "public_key", "created_at", "revoked_at", "is_active"]


class SshKeyListCreateApi(APIView):
    pagination_class = Pagination  # read by the OpenAPI schema: the list answer is a page, not a bare list

    class InputSerializer(serializers.Serializer):
        # The key is validated by accounts.services.ssh_key_add, which says why a key is refused.
        name = serializers.CharField(required=False, allow_blank=True, max_length=100, trim_whitespace=False,
                                     help_text="Where the key lives, e.g. 'work laptop'. Empty: the key's comment.")
        public_key = serializers.CharField(trim_whitespace=False, max_length=64 * 1024,
                                           help_text="One OpenSSH public-key line (the .pub file), never the private key.")

    @extend_schema(responses=SshKeyOutputSerializer(many=True), summary="My SSH public keys (active and revoked)")
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(ssh_key_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(SshKeyOutputSerializer(page, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: SshKeyOutputSerializer},
                   summary="Add an SSH public key (refused with the reason: private key, DSA, short RSA, ...)")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(serializer.fields)) if hasattr(request.data, "keys") else []
        if unknown:
            raise exceptions.ValidationError({name: [_("Unknown field.")] for name in unknown})
        key = ssh_key_add(user=request.user, name=serializer.validated_data.get("name", ""),
                          public_key=serializer.validated_data["public_key"])
        return Response(SshKeyOutputSerializer(key).data, status=status.HTTP_201_CREATED)


class SshKeyRevokeApi(APIView):
    @extend_schema(request=None, responses=SshKeyOutputSerializer,
                   summary="Revoke one of my SSH keys (kept for the history; revoking twice is harmless)")
    def post(self, request, key_id: int):
        key = get_object_or_404(ssh_key_list(user=request.user), pk=key_id)
        return Response(SshKeyOutputSerializer(ssh_key_revoke(key=key)).data)


# ---------------------------------------------------------------------------------------------
# Notifications: the caller's own (a notification belongs to a person), so another user's answers 404.
# ---------------------------------------------------------------------------------------------


class NotificationOutputSerializer(serializers.ModelSerializer):
    link = serializers.CharField(help_text="A path on this site (e.g. /market/reservations/12/), or empty.")
    # In the request's language (Accept-Language) and the caller's zone, as the page shows them.
    title = serializers.CharField(source="shown_title")
    body = serializers.CharField(source="shown_body")

    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "link", "created_at", "read_at"]


class NotificationListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=NotificationOutputSerializer(many=True), summary="My notifications, newest first",
                   parameters=[OpenApiParameter("unread", bool, description="Only those not read yet.")])
    def get(self, request):
        notifications = notification_list(user=request.user)
        if request.query_params.get("unread", "").lower() in ("1", "true"):
            notifications = notifications.filter(read_at__isnull=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(notifications, request, view=self)
        return paginator.get_paginated_response(NotificationOutputSerializer(page, many=True).data)


class NotificationReadApi(APIView):
    @extend_schema(request=None, responses=NotificationOutputSerializer, summary="Mark one of my notifications read (twice is harmless)")
    def post(self, request, notification_id: int):
        notification = get_object_or_404(notification_list(user=request.user), pk=notification_id)
        return Response(NotificationOutputSerializer(notification_mark_read(notification=notification)).data)
