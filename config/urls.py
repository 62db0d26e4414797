from django.contrib import admin
from django.urls import include, path
from django.views.decorators.cache import cache_page
from django.views.i18n import JavaScriptCatalog
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.api import MeApi
from accounts.views import set_language
from billing.webhooks import stripe_webhook
from config.health import healthz

api_patterns = [
    path("me/", MeApi.as_view(), name="me"),
    path("", include("accounts.api_urls")),
    path("", include("inventory.urls")),
    path("", include("marketplace.urls")),
    path("", include("billing.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("stripe/webhook/", stripe_webhook, name="stripe-webhook"),
    path("accounts/", include("accounts.urls")),
    # set_language: the language switcher posts here (next= brings the user back to the same page); for a
    # signed-in person accounts' view also keeps the choice on their account.
    path("i18n/setlang/", set_language, name="set_language"),
    # The djangojs catalog for the scripts in frontend/static (gettext() in the browser). It changes only
    # with a release: cached for an hour (the cache key carries the active language).
    path("jsi18n/", cache_page(3600)(JavaScriptCatalog.as_view()), name="javascript-catalog"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="api-redoc"),
    path("api/", include((api_patterns, "api"))),
    path("", include("frontend.urls")),
]

handler404 = "config.api.page_not_found"
handler500 = "config.api.server_error"
