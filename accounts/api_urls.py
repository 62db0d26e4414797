"""REST API routes of accounts (mounted under /api/; /api/me/ is in config/urls.py)."""

from django.urls import path

from accounts import api

urlpatterns = [
    path("ssh-keys/", api.SshKeyListCreateApi.as_view(), name="ssh-keys"),
    path("ssh-keys/<int:key_id>/revoke/", api.SshKeyRevokeApi.as_view(), name="ssh-key-revoke"),
    path("notifications/", api.NotificationListApi.as_view(), name="notifications"),
    path("notifications/<int:notification_id>/read/", api.NotificationReadApi.as_view(), name="notification-read"),
]
