"""The landing page's network totals over the whole network, against a bare count of devices."""

from django.db import connection
from django.test import Client

from bench.harness import measure
from inventory.selectors import network_totals


def run() -> None:
    def bare_count():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM inventory_device")
            cursor.fetchone()

    baseline = measure("baseline: SELECT count(*) FROM inventory_device", bare_count)
    measure("network_totals() (landing page, uncached)", network_totals, baseline=baseline)
    client = Client()
    page_baseline = measure("baseline: GET /accounts/login/ (a minimal page)", lambda: client.get("/accounts/login/"))
    measure("GET / (landing, totals cached in Redis)", lambda: client.get("/"), baseline=page_baseline)
