from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.sign_up, name="signup"),
    path("organization/", views.switch_organization, name="switch-organization"),
    path("tokens/", views.api_tokens, name="tokens"),
    path("members/", views.members, name="members"),
    path("members/<int:pk>/remove/", views.member_remove, name="member-remove"),
    path("tokens/<int:pk>/revoke/", views.api_token_revoke_view, name="token-revoke"),
    path("ssh-keys/", views.ssh_keys, name="ssh-keys"),
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification-read"),
    path("notifications/read-all/", views.notifications_read_all, name="notifications-read-all"),
    path("notifications/preferences/", views.notification_preferences, name="notification-preferences"),
    path("ssh-keys/<int:pk>/revoke/", views.ssh_key_revoke_view, name="ssh-key-revoke"),
]
