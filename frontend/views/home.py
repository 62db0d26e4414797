from django.shortcuts import render

from frontend.views.dashboards import history_chart
from inventory.selectors import accelerator_model_list, network_totals_cached
from marketplace.dashboard import network_summary_public


def home(request):
    summary = network_summary_public()
    return render(request, "frontend/home.html", {
        "totals": network_totals_cached(), "network": summary,
        "history_chart": history_chart(summary["history"], chart_id="public-history"),
    })


def catalog(request):
    """The accelerator catalog: every model with its ECU rating, and where the figures come from."""
    models = accelerator_model_list()
    vendors = sorted(set(accelerator_model_list().values_list("vendor", flat=True)))
    vendor = request.GET.get("vendor", "")
    if vendor not in vendors:
        vendor = ""  # an unknown vendor (or garbage such as a NUL byte) shows the whole catalog
    if vendor:
        models = models.filter(vendor=vendor)
    return render(
        request,
        "frontend/catalog.html",
        {"models": models, "vendors": vendors, "vendor": vendor},
    )
