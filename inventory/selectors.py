"""Reads of inventory that other apps and the pages use."""

from django.core.cache import cache
from django.db.models import Count, DecimalField, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from inventory.models import AcceleratorModel, Device, NationalHub, Node, Offer, Province, Site

NETWORK_TOTALS_CACHE_KEY = "inventory:network_totals"
NETWORK_TOTALS_CACHE_SECONDS = 300


def network_totals() -> dict:
    """Live totals for the landing page: sites, cards by vendor, listed ECU."""
    sites = Site.objects.aggregate(
        total=Count("id"),
        online=Count("id", filter=Q(lifecycle=Site.Lifecycle.ONLINE)),
        pipeline=Count("id", filter=Q(lifecycle__in=[Site.Lifecycle.PLANNED, Site.Lifecycle.UNDER_CONSTRUCTION])),
    )
    live_nodes = Node.objects.exclude(status=Node.Status.RETIRED)
    cards_by_vendor = list(
        live_nodes.values(vendor=F("accelerator_model__vendor"))
        .annotate(cards=Sum("card_count"))
        .order_by("-cards", "vendor")
    )
    listed = live_nodes.filter(
        cluster__site__lifecycle=Site.Lifecycle.ONLINE,
        cluster__offers__is_active=True,
        cluster__offers__accelerator_model=F("accelerator_model"),
    )
    listed_ecu = listed.aggregate(
        ecu=Coalesce(
            Sum(F("card_count") * F("accelerator_model__ecu_per_card"), output_field=DecimalField()),
            Value(0, output_field=DecimalField()),
        )
    )["ecu"]
    return {
        "sites": sites["total"],
        "sites_online": sites["online"],
        "sites_pipeline": sites["pipeline"],
        "cards": sum(row["cards"] or 0 for row in cards_by_vendor),
        "cards_by_vendor": cards_by_vendor,
        "architectures": live_nodes.values("accelerator_model__architecture").distinct().count(),
        "listed_ecu": listed_ecu,
        "offers": Offer.objects.filter(is_active=True).count(),
        "computed_at": timezone.now(),
    }


def accelerator_model_list():
    return AcceleratorModel.objects.all()


def national_hub_list():
    return NationalHub.objects.all()


def province_list():
    return Province.objects.select_related("hub")


def device_count() -> int:
    return Device.objects.count()


def network_totals_cached() -> dict:
    """The totals as last refreshed by the beat task (every minute); computed when the cache is cold."""
    totals = cache.get(NETWORK_TOTALS_CACHE_KEY)
    if totals is None:
        totals = network_totals()
        cache.set(NETWORK_TOTALS_CACHE_KEY, totals, NETWORK_TOTALS_CACHE_SECONDS)
    return totals
