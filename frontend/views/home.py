from django.shortcuts import render

from inventory.selectors import network_totals_cached


def home(request):
    return render(request, "frontend/home.html", {"totals": network_totals_cached()})
