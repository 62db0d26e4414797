from django.shortcuts import render

from inventory.selectors import accelerator_model_list, network_totals_cached


def home(request):
    return render(request, "frontend/home.html", {"totals": network_totals_cached()})


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
