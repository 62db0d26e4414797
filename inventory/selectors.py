"""Reads of inventory that other apps and the pages use."""

from datetime import datetime, time, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, DecimalField, F, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization
from inventory.market_selectors import offers_listed
from inventory.models import (
    AcceleratorModel,
    Cluster,
    Device,
    DeviceAllocation,
    MaintenanceWindow,
    NationalHub,
    Node,
    Offer,
    Province,
    Site,
)

NETWORK_TOTALS_CACHE_KEY = "inventory:network_totals"
NETWORK_TOTALS_CACHE_SECONDS = 300


# Capacity an agent has vouched for: the node's agent reported its hardware and the report matches
# the listing (not flagged), in a site that is online. A listing nobody has verified - an imported
# node whose agent never reported, a site declared online by hand with no reporting node - is the
# pipeline, shown apart and never added to the network's headline figures.
VERIFIED_NODE = ~Q(reported_model_name="") & Q(mismatch_reason="", cluster__site__lifecycle=Site.Lifecycle.ONLINE)


def network_totals() -> dict:
    """Live totals for the landing page: verified capacity (sites, cards by vendor, architectures,
    listed ECU) and, apart, the pipeline (sites being built or awaiting their agents, unverified cards).

    A handful of aggregate statements whatever the size of the network.
    """
    live_nodes = Node.objects.exclude(status=Node.Status.RETIRED).exclude(cluster__site__lifecycle=Site.Lifecycle.RETIRED)
    verified = live_nodes.filter(VERIFIED_NODE)
    cards_by_vendor = list(
        verified.values(vendor=F("accelerator_model__vendor")).annotate(cards=Sum("card_count")).order_by("-cards", "vendor")
    )
    nodes = live_nodes.aggregate(
        nodes_unverified=Count("id", filter=~VERIFIED_NODE),
        cards_unverified=Coalesce(Sum("card_count", filter=~VERIFIED_NODE), 0),
    )
    verified_sites = verified.values("cluster__site_id")
    sites = Site.objects.aggregate(
        online=Count("id", filter=Q(lifecycle=Site.Lifecycle.ONLINE, id__in=verified_sites)),
        awaiting_agents=Count("id", filter=Q(lifecycle=Site.Lifecycle.ONLINE) & ~Q(id__in=verified_sites)),
        planned=Count("id", filter=Q(lifecycle=Site.Lifecycle.PLANNED)),
        under_construction=Count("id", filter=Q(lifecycle=Site.Lifecycle.UNDER_CONSTRUCTION)),
    )
    listed = verified.filter(
        cluster__offers__is_active=True, cluster__offers__accelerator_model=F("accelerator_model")
    )
    listed_ecu = listed.aggregate(
        ecu=Coalesce(
            Sum(F("card_count") * F("accelerator_model__ecu_per_card"), output_field=DecimalField()),
            Value(0, output_field=DecimalField()),
        )
    )["ecu"]
    return {
        "sites": sites["online"],
        "cards": sum(row["cards"] or 0 for row in cards_by_vendor),
        "cards_by_vendor": cards_by_vendor,
        "architectures": verified.values("accelerator_model__architecture").distinct().count(),
        "listed_ecu": listed_ecu,
        "offers": offers_listed().count(),
        "pipeline": {
            "sites_planned": sites["planned"],
            "sites_under_construction": sites["under_construction"],
            "sites_awaiting_agents": sites["awaiting_agents"],
            "nodes_unverified": nodes["nodes_unverified"],
            "cards_unverified": nodes["cards_unverified"],
        },
        "computed_at": timezone.now(),
    }


def accelerator_model_list():
    return AcceleratorModel.objects.all()


def _words(text: str) -> str:
    return " ".join(text.casefold().split())


def vendor_names_for(text: str) -> list[str]:
    """The catalog vendors a buyer means by `text`. THE vendor-matching rule (search page and API):

    case-insensitive, spaces collapsed; the text matches a vendor when it is its whole name ("huawei
    (hisilicon)"), the name without the part in parentheses or its leading words ("Huawei", "Iluvatar"
    for "Iluvatar CoreX"), or the part in parentheses ("HiSilicon", "Baidu" for "Kunlunxin (Baidu)").
    Never a fragment of a word: "Hua" matches nothing.
    """
    wanted = _words(text)
    if not wanted:
        return []
    matches = []
    for vendor in AcceleratorModel.objects.values_list("vendor", flat=True).distinct().order_by("vendor"):
        name = _words(vendor)
        base, _, rest = name.partition("(")
        words = base.split()
        aliases = {name, rest.rstrip(") ").strip()} | {" ".join(words[:n]) for n in range(1, len(words) + 1)}
        if wanted in aliases:
            matches.append(vendor)
    return matches


def accelerator_models_for(text: str) -> QuerySet[AcceleratorModel]:
    """The catalog models a buyer means by `text`: the slug or the name, case-insensitively
    ("nvidia-h100-sxm5-80gb", "H100 SXM5 80GB", "h100 sxm5 80gb")."""
    wanted = " ".join(text.split())
    return AcceleratorModel.objects.filter(Q(slug__iexact=wanted) | Q(name__iexact=wanted))


def catalog_vendor_choices() -> list[tuple[str, str]]:
    return [(vendor, vendor) for vendor in AcceleratorModel.objects.values_list("vendor", flat=True).distinct().order_by("vendor")]


def accelerator_model_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Catalog models grouped by vendor, as (vendor, [(slug, name), ...]) for a select box."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for vendor, slug, name in AcceleratorModel.objects.order_by("vendor", "name").values_list("vendor", "slug", "name"):
        groups.setdefault(vendor, []).append((slug, name))
    return list(groups.items())


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


# ---------------------------------------------------------------------------------------------
# A provider's own inventory. Every read is scoped to the owner organization: another
# organization's object is simply not in these querysets (the pages and the API answer 404).
# ---------------------------------------------------------------------------------------------


def site_list(*, organization: Organization | None) -> QuerySet[Site]:
    if organization is None:
        return Site.objects.none()
    return Site.objects.filter(owner=organization).select_related("province__hub").order_by("name")


def cluster_list(*, organization: Organization | None) -> QuerySet[Cluster]:
    if organization is None:
        return Cluster.objects.none()
    return Cluster.objects.filter(site__owner=organization).select_related("site").order_by("site__name", "name")


def node_list(*, organization: Organization | None) -> QuerySet[Node]:
    if organization is None:
        return Node.objects.none()
    return (
        Node.objects.filter(cluster__site__owner=organization)
        .select_related("cluster__site", "accelerator_model")
        .order_by("cluster__site__name", "cluster__name", "hostname")
    )


def offer_list(*, organization: Organization | None) -> QuerySet[Offer]:
    if organization is None:
        return Offer.objects.none()
    return (
        Offer.objects.filter(cluster__site__owner=organization)
        .select_related("cluster__site", "accelerator_model")
        .order_by("id")
    )


def maintenance_window_list(*, organization: Organization | None) -> QuerySet[MaintenanceWindow]:
    if organization is None:
        return MaintenanceWindow.objects.none()
    return (
        MaintenanceWindow.objects.filter(cluster__site__owner=organization)
        .select_related("cluster__site", "node")
        .annotate(device_count=Count("allocations", filter=Q(allocations__is_active=True)))
        .order_by("period")
    )


def sites_with_cards(*, organization: Organization | None) -> list[Site]:
    """The organization's sites, each with `.cards` = [{model, status, cards}] (one grouped query)."""
    sites = list(site_list(organization=organization).annotate(cluster_count=Count("clusters", distinct=True)))
    rows = (
        Node.objects.filter(cluster__site__in=sites)
        .values("cluster__site_id", "accelerator_model__name", "status")
        .annotate(cards=Sum("card_count"), nodes=Count("id"))
        .order_by("cluster__site_id", "accelerator_model__name", "status")
    )
    by_site: dict[int, list[dict]] = {}
    for row in rows:
        by_site.setdefault(row["cluster__site_id"], []).append(
            {"model": row["accelerator_model__name"], "status": row["status"], "cards": row["cards"], "nodes": row["nodes"],
             "status_label": Node.Status(row["status"]).label}
        )
    for site in sites:
        site.cards = by_site.get(site.pk, [])
        site.total_cards = sum(row["cards"] for row in site.cards if row["status"] != Node.Status.RETIRED)
    return sites


def site_cards_by_model_and_status(*, site: Site) -> list[dict]:
    """[{model, status, nodes, cards}] for one site - a grouped query."""
    return list(
        Node.objects.filter(cluster__site=site)
        .values(model=F("accelerator_model__name"), model_slug=F("accelerator_model__slug"))
        .annotate(
            **{status: Sum("card_count", filter=Q(status=status)) for status in Node.Status.values},
            nodes=Count("id"),
        )
        .order_by("model")
    )


def site_clusters(*, site: Site) -> QuerySet[Cluster]:
    return site.clusters.annotate(
        node_count=Count("nodes", filter=~Q(nodes__status=Node.Status.RETIRED), distinct=True),
        card_count=Sum("nodes__card_count", filter=~Q(nodes__status=Node.Status.RETIRED)),
    ).prefetch_related(
        Prefetch("offers", queryset=Offer.objects.filter(is_active=True).select_related("accelerator_model"))
    )


# The utilization panel: for each day, cards listed (rentable: site online, node online and not
# flagged, an active offer for the node's model in its cluster whose rentable period touches the
# day) against cards booked (reservation allocations overlapping the day) and cards in maintenance.
# Set-based: one statement over generate_series, whatever the number of devices.
SITE_UTILIZATION_SQL = f"""
WITH days AS (
    -- Local midnights computed in Python (zoneinfo), so a DST change gives a 23- or 25-hour day
    -- instead of shifting every later day by an hour.
    SELECT b.day_start, tstzrange(b.day_start, b.day_end, '[)') AS day
    FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS b(day_start, day_end)
),
site_devices AS (
    SELECT d.id, n.cluster_id, n.accelerator_model_id,
           (n.status = '{Node.Status.ONLINE}' AND n.mismatch_reason = '' AND s.lifecycle = '{Site.Lifecycle.ONLINE}') AS rentable
    FROM {Device._meta.db_table} d
    JOIN {Node._meta.db_table} n ON n.id = d.node_id
    JOIN {Cluster._meta.db_table} c ON c.id = n.cluster_id
    JOIN {Site._meta.db_table} s ON s.id = c.site_id
    WHERE s.id = %(site_id)s AND n.status <> '{Node.Status.RETIRED}'
),
listed AS (
    SELECT days.day_start, count(sd.id) AS cards
    FROM days
    JOIN site_devices sd ON sd.rentable
    WHERE EXISTS (
        SELECT 1 FROM {Offer._meta.db_table} o
        WHERE o.is_active AND o.cluster_id = sd.cluster_id AND o.accelerator_model_id = sd.accelerator_model_id
          AND (o.rentable_period IS NULL OR o.rentable_period && days.day)
    )
    GROUP BY days.day_start
),
allocated AS (
    SELECT days.day_start,
           count(DISTINCT a.device_id) FILTER (WHERE a.purpose = '{DeviceAllocation.Purpose.RESERVATION}') AS booked,
           count(DISTINCT a.device_id) FILTER (WHERE a.purpose = '{DeviceAllocation.Purpose.MAINTENANCE}') AS maintenance
    FROM days
    JOIN {DeviceAllocation._meta.db_table} a ON a.is_active AND a.period && days.day
    JOIN site_devices sd ON sd.id = a.device_id
    GROUP BY days.day_start
)
SELECT days.day_start, COALESCE(listed.cards, 0), COALESCE(allocated.booked, 0), COALESCE(allocated.maintenance, 0)
FROM days
LEFT JOIN listed ON listed.day_start = days.day_start
LEFT JOIN allocated ON allocated.day_start = days.day_start
ORDER BY days.day_start
"""  # noqa: S608 - only table names and status constants are interpolated; values are parameters


def site_utilization(*, site: Site, days: int = 14, start: datetime | None = None) -> list[dict]:
    """Per day from today (midnight in the active time zone): listed, booked and maintenance cards.

    `share` is booked / listed in percent (0 when nothing is listed) for the bar chart.
    """
    zone = timezone.get_current_timezone()
    first = timezone.localtime(start).date() if start is not None else timezone.localdate()
    midnights = [
        timezone.make_aware(datetime.combine(first + timedelta(days=offset), time.min), zone) for offset in range(days + 1)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            SITE_UTILIZATION_SQL, {"starts": midnights[:-1], "ends": midnights[1:], "site_id": site.pk}
        )
        rows = cursor.fetchall()
    result = []
    for day_start, listed, booked, maintenance in rows:
        result.append(
            {
                "day": timezone.localtime(day_start).date(),
                "listed": listed,
                "booked": booked,
                "maintenance": maintenance,
                "share": round(100 * booked / listed) if listed else 0,
            }
        )
    return result


def maintenance_window_upcoming(*, cluster: Cluster) -> QuerySet[MaintenanceWindow]:
    return (
        cluster.maintenance_windows.filter(period__endswith__gt=timezone.now() - timedelta(days=7))
        .select_related("node")
        .annotate(device_count=Count("allocations", filter=Q(allocations__is_active=True)))
        .order_by("period")
    )


def offers_priced(*, organization: Organization | None, cluster: Cluster | None = None) -> list[Offer]:
    """The organization's offers (optionally of one cluster) with `.price_per_ecu_hour_minor` (None = the
    card is not rated) for display, by inventory.pricing's one rule."""
    from inventory.pricing import price_per_ecu_hour_minor

    offers = offer_list(organization=organization)
    if cluster is not None:
        offers = offers.filter(cluster=cluster)
    offers = list(offers.order_by("-is_active", "accelerator_model__name", "id"))
    for offer in offers:
        offer.price_per_ecu_hour_minor = price_per_ecu_hour_minor(
            price_per_card_hour_minor=offer.price_per_card_hour_minor, ecu_per_card=offer.accelerator_model.ecu_per_card
        )
    return offers


def node_devices(*, node_id: int) -> QuerySet[Device]:
    """The node's devices (cards) by index: the agent learns their ids from its register answer."""
    return Device.objects.filter(node_id=node_id).order_by("index")


def node_device_ids_sql(*, node_id: str) -> str:
    """SQL for the array of the node's device ids, `node_id` being an SQL expression: for callers that
    check devices inside one statement of their own (metering checks a batch's devices in its INSERT)."""
    return f"ARRAY(SELECT id FROM inventory_device WHERE node_id = {node_id})"  # noqa: S608 - the caller's SQL expression, never input


def node_device_ids(*, node_id: int) -> set[int]:
    """The ids of the node's devices (a node's cards are fixed at listing)."""
    return set(Device.objects.filter(node_id=node_id).values_list("id", flat=True))


def nodes_failed():
    """Nodes off the market for a fault (unhealthy or offline), with where they are, oldest heartbeat
    first: what an operator looks at during an incident."""
    from inventory.models import Node

    return (
        Node.objects.filter(status__in=[Node.Status.UNHEALTHY, Node.Status.OFFLINE])
        .select_related("cluster__site__owner", "accelerator_model")
        .order_by(F("last_heartbeat_at").asc(nulls_first=True), "pk")
    )


NODES_SERVING_SHOWN = 50  # the operators' page lists at most this many online nodes in use


def nodes_serving(*, now: datetime | None = None):
    """Online nodes whose cards serve reservations right now, with how many reservations, busiest first
    (at most NODES_SERVING_SHOWN): the nodes an operator may mark failed to move work (a demo, a real
    incident) without looking their ids up elsewhere."""
    from inventory.models import DeviceAllocation, Node

    now = now or timezone.now()
    serving = DeviceAllocation.objects.filter(
        node_id=OuterRef("pk"), is_active=True, purpose=DeviceAllocation.Purpose.RESERVATION, period__contains=now
    ).order_by().values("node_id").annotate(reservations=Count("reservation_id", distinct=True)).values("reservations")[:1]
    return (
        Node.objects.filter(status=Node.Status.ONLINE)
        .annotate(reservations_now=Subquery(serving))
        .filter(reservations_now__gt=0)
        .select_related("cluster__site__owner", "accelerator_model")
        .order_by("-reservations_now", "pk")[:NODES_SERVING_SHOWN]
    )
