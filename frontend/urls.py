"""Page URLs. Each area has its own module so the areas can grow apart:
/provider/ (data-center owners), /market/ (buyers), /finance/ (platform finance staff), later /operator/."""

from django.urls import include, path

from frontend.views import dashboards, home, jobs

app_name = "frontend"
urlpatterns = [
    path("", home.home, name="home"),
    path("catalog/", home.catalog, name="catalog"),
    path("network/", dashboards.network, name="network-dashboard"),
    path("provider/", include("frontend.urls_provider")),
    path("market/", include("frontend.urls_market")),
    path("operator/", include("frontend.urls_operator")),
    path("finance/", include("frontend.urls_finance")),
    path("jobs/<int:job_id>/", jobs.job_page, name="job"),
    path("jobs/<int:job_id>/status.json", jobs.job_status, name="job-status"),
    path("jobs/<int:job_id>/download/", jobs.job_download, name="job-download"),
]
