"""Reads behind the dashboards: the network (operators, and its public summary on the landing page),
a buyer organization's and a provider organization's. Reads only; the pages draw them.

Definitions (README "Dashboards" says the same):

- **listed** cards: cards of nodes on the market - node online, its agent's report matches the listing
  (not flagged), in a data center that is online, with an active offer for its cluster and model.
- **rented** cards (now): devices a reservation holds at this instant (an active reservation
  allocation of the device calendar whose period contains now). Rented card-hours over a period: the
  reservation allocations' effective periods (cut at their release when released) within it.
- **busy** card-hours: the usage rollup's busy seconds / 3600 (marketplace_usagehourly, from the node
  agents' samples, whether a reservation held the card or not).
- **utilization** = busy card-hours / listed card-hours over the same window. Listings keep no history
  yet, so listed card-hours = the cards listed now x the window's hours (a site listed mid-window
  counts as listed for all of it: the figure errs low, never high).
- **ECU** = cards x the model's ECU rating; a model with no rating counts 0 ECU (never guessed).

Every figure is a few aggregate statements whatever the size of the network; the network's are kept in
the cache by a beat task every minute (network_dashboard_refresh).
"""

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.models import Organization
from inventory.models import MaintenanceWindow, NationalHub, Node, Site
from inventory.reliability import provider_reliability_score
from inventory.selectors import network_totals_cached
from marketplace.models import Reservation

NETWORK_DASHBOARD_CACHE_KEY = "marketplace:network_dashboard"
# Beat refreshes it every minute (marketplace.network_dashboard_refresh); the entry outlives two missed
# refreshes, so a page view computes it only when beat is down or the cache was emptied.
NETWORK_DASHBOARD_CACHE_SECONDS = 180
# The window of the "by hub / province / ..." tables' utilization, and of the public summary.
UTILIZATION_WINDOW = timedelta(hours=24)
HISTORY_DAYS = 30
# A rented card whose mean utilization over the last day is below this (or that reported nothing for
# a full hour it was held) is idle.
IDLE_UTILIZATION_PERCENT = 5.0

# Labels are lazy: the cached figures are shared by readers of every language, each page renders its own.
DIMENSIONS = (
    ("hub", gettext_lazy("National hub")),
    ("province", gettext_lazy("Province")),
    ("vendor", gettext_lazy("Vendor")),
    ("model", gettext_lazy("Accelerator model")),
    ("provider", gettext_lazy("Provider")),
)
# The group of nodes without a hub (or province): a marker the page shows in the reader's language.
NO_GROUP = "(none)"

# One row per node that is listed, rented now or was busy in the window, with what it is grouped by.
NODE_FIGURES_SQL = """
WITH listed AS (
    SELECT n.id FROM inventory_node n
    JOIN inventory_cluster c ON c.id = n.cluster_id
    JOIN inventory_site s ON s.id = c.site_id
    WHERE n.status = 'online' AND n.mismatch_reason = '' AND s.lifecycle = 'online'
      AND EXISTS (SELECT 1 FROM inventory_offer f WHERE f.cluster_id = n.cluster_id
                  AND f.accelerator_model_id = n.accelerator_model_id AND f.is_active)
      {scope}
), rented AS (
    SELECT a.node_id, count(DISTINCT a.device_id) AS cards FROM inventory_deviceallocation a
    WHERE a.is_active AND a.purpose = 'reservation' AND a.period @> %(rented_at)s::timestamptz
    GROUP BY a.node_id
), busy AS (
    SELECT u.node_id, sum(u.busy_seconds) / 3600.0 AS hours FROM marketplace_usagehourly u
    WHERE u.hour >= %(since)s AND u.hour < %(window_end)s
    GROUP BY u.node_id
), nodes AS (
    SELECT id FROM listed UNION SELECT node_id FROM rented UNION SELECT node_id FROM busy
)
SELECT n.id, n.cluster_id, s.id, s.name, s.owner_id, o.name, am.vendor, am.name, am.ecu_per_card,
       p.name, h.name,
       CASE WHEN l.id IS NULL THEN 0 ELSE n.card_count END, COALESCE(r.cards, 0), COALESCE(b.hours, 0)
FROM nodes x
JOIN inventory_node n ON n.id = x.id
JOIN inventory_cluster c ON c.id = n.cluster_id
JOIN inventory_site s ON s.id = c.site_id
JOIN accounts_organization o ON o.id = s.owner_id
JOIN inventory_acceleratormodel am ON am.id = n.accelerator_model_id
LEFT JOIN inventory_province p ON p.id = s.province_id
LEFT JOIN inventory_nationalhub h ON h.id = p.hub_id
LEFT JOIN listed l ON l.id = n.id
LEFT JOIN rented r ON r.node_id = n.id
LEFT JOIN busy b ON b.node_id = n.id
WHERE TRUE {scope}
"""

# Per day: rented card-hours (reservation allocations' effective periods) and busy card-hours (rollup).
HISTORY_SQL = """
WITH days AS (
    SELECT d AS day_start, d + interval '1 day' AS day_end
    FROM generate_series(%(first)s::timestamptz, %(last)s::timestamptz, interval '1 day') AS d
), served AS (
    SELECT a.node_id, lower(a.period) AS s,
           CASE WHEN NOT a.is_active AND a.released_at IS NOT NULL THEN least(upper(a.period), a.released_at)
                ELSE upper(a.period) END AS e
    FROM inventory_deviceallocation a
    WHERE a.purpose = 'reservation' AND a.period && tstzrange(%(first)s::timestamptz, %(end)s::timestamptz)
      {alloc_scope}
), rented AS (
    SELECT days.day_start,
           sum(extract(epoch FROM least(served.e, days.day_end) - greatest(served.s, days.day_start))) / 3600.0 AS hours
    -- A booking cancelled before its start was released before it began (e <= s): it served nothing.
    FROM days JOIN served ON served.s < days.day_end AND served.e > days.day_start AND served.e > served.s
    GROUP BY days.day_start
), busy AS (
    SELECT days.day_start, sum(u.busy_seconds) / 3600.0 AS hours
    FROM days JOIN marketplace_usagehourly u ON u.hour >= days.day_start AND u.hour < days.day_end
    {usage_scope}
    GROUP BY days.day_start
)
SELECT days.day_start, COALESCE(rented.hours, 0), COALESCE(busy.hours, 0)
FROM days LEFT JOIN rented USING (day_start) LEFT JOIN busy USING (day_start)
ORDER BY days.day_start
"""

PROVIDER_SCOPE = "AND s.owner_id = %(provider)s"
PROVIDER_ALLOC_SCOPE = (
    "AND a.cluster_id IN (SELECT c.id FROM inventory_cluster c JOIN inventory_site s ON s.id = c.site_id "
    "WHERE s.owner_id = %(provider)s)"
)
PROVIDER_USAGE_SCOPE = (
    "JOIN inventory_node n ON n.id = u.node_id JOIN inventory_cluster c ON c.id = n.cluster_id "
    "JOIN inventory_site s ON s.id = c.site_id WHERE s.owner_id = %(provider)s"
)


def _hour_floor(instant: datetime) -> datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


def _share(part: float, whole: float) -> float | None:
    """part / whole in percent, one decimal; None when nothing is listed (not 0: there is nothing to use)."""
    return round(100 * part / whole, 1) if whole else None


def _node_rows(*, now: datetime, provider: Organization | None = None) -> list[dict]:
    """Per node: listed cards, cards rented at `now`, busy card-hours in the window ending at the last full hour."""
    scope = PROVIDER_SCOPE if provider is not None else ""
    window_end = _hour_floor(now)
    params = {"rented_at": now, "window_end": window_end, "since": window_end - UTILIZATION_WINDOW,
              "provider": provider.pk if provider else None}
    with connection.cursor() as cursor:
        cursor.execute(NODE_FIGURES_SQL.format(scope=scope), params)
        rows = cursor.fetchall()
    keys = ("node", "cluster", "site_id", "site", "provider_id", "provider", "vendor", "model", "ecu_per_card",
            "province", "hub", "listed", "rented", "busy_hours")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _summarize(rows: list[dict], *, window_hours: float) -> dict:
    listed = sum(row["listed"] for row in rows)
    rented = sum(row["rented"] for row in rows)
    busy_hours = sum(float(row["busy_hours"]) for row in rows)
    listed_hours = listed * window_hours
    return {
        "listed_cards": listed,
        "rented_cards": rented,
        "listed_ecu": sum(row["listed"] * (row["ecu_per_card"] or Decimal(0)) for row in rows),
        "rented_ecu": sum(row["rented"] * (row["ecu_per_card"] or Decimal(0)) for row in rows),
        "busy_card_hours": round(busy_hours, 2),
        "listed_card_hours": listed_hours,
        # Busy cards "now": the card-hours of the window spread over it (cards busy on average).
        "busy_cards": round(busy_hours / window_hours, 1),
        "utilization_percent": _share(busy_hours, listed_hours),
        "rented_percent": _share(rented, listed),
    }


def _group(rows: list[dict], key: str, *, window_hours: float) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row[key] or NO_GROUP].append(row)
    result = [{"name": name, **_summarize(members, window_hours=window_hours)} for name, members in groups.items()]
    return sorted(result, key=lambda item: (-item["listed_cards"], -item["rented_cards"], item["name"]))


def _history(*, now: datetime, listed_cards: int, provider: Organization | None = None) -> list[dict]:
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=HISTORY_DAYS - 1)
    params = {"first": first, "last": today, "end": today + timedelta(days=1),
              "provider": provider.pk if provider else None}
    sql = HISTORY_SQL.format(
        alloc_scope=PROVIDER_ALLOC_SCOPE if provider else "", usage_scope=PROVIDER_USAGE_SCOPE if provider else ""
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    result = []
    for day_start, rented_hours, busy_hours in rows:
        listed_hours = listed_cards * 24
        result.append({
            "day": timezone.localtime(day_start).date(),
            "listed_card_hours": listed_hours,
            "rented_card_hours": round(float(rented_hours), 2),
            "busy_card_hours": round(float(busy_hours), 2),
            "utilization_percent": _share(float(busy_hours), listed_hours),
        })
    return result


def _hub_grid(*, by_hub: list[dict]) -> list[dict]:
    """The 8 national hubs, each with its figures (zero when nothing is listed there) and its pipeline."""
    figures = {row["name"]: row for row in by_hub}
    building = defaultdict(lambda: {"planned": 0, "under_construction": 0})
    sites = Site.objects.filter(lifecycle__in=[Site.Lifecycle.PLANNED, Site.Lifecycle.UNDER_CONSTRUCTION],
                                province__hub__isnull=False)
    for hub_name, lifecycle in sites.values_list("province__hub__name", "lifecycle"):
        building[hub_name][lifecycle] += 1
    grid = []
    for hub in NationalHub.objects.order_by("name"):
        row = figures.get(hub.name) or {"name": hub.name, **_summarize([], window_hours=1)}
        grid.append({**row, "name_zh": hub.name_zh, "role": hub.role,
                     "sites_planned": building[hub.name]["planned"],
                     "sites_under_construction": building[hub.name]["under_construction"]})
    return grid


def network_dashboard(*, now: datetime | None = None) -> dict:
    """Everything the operators' network page shows (see the module's definitions)."""
    now = now or timezone.now()
    # Usage is rolled up by the hour: the window ends at the last full hour so each hour counts whole.
    window_end = _hour_floor(now)
    rows = _node_rows(now=now)
    window_hours = UTILIZATION_WINDOW.total_seconds() / 3600
    summary = _summarize(rows, window_hours=window_hours)
    by = {key: _group(rows, key, window_hours=window_hours) for key, _ in DIMENSIONS}
    return {
        "computed_at": now,
        "window_end": window_end,
        "window_hours": window_hours,
        "summary": summary,
        "by": [{"key": key, "label": label, "rows": by[key]} for key, label in DIMENSIONS],
        "history": _history(now=now, listed_cards=summary["listed_cards"]),
        "hubs": _hub_grid(by_hub=by["hub"]),
        "pipeline": network_totals_cached()["pipeline"],
    }


def network_dashboard_refresh() -> dict:
    """Compute the network's figures and put them in the cache (the beat task; a cache write, nothing in the DB)."""
    figures = network_dashboard()
    cache.set(NETWORK_DASHBOARD_CACHE_KEY, figures, NETWORK_DASHBOARD_CACHE_SECONDS)
    return figures


def network_dashboard_cached() -> dict:
    """The figures as last refreshed (at most a minute old while beat runs); computed when the cache is cold."""
    figures = cache.get(NETWORK_DASHBOARD_CACHE_KEY)
    if figures is None:
        figures = network_dashboard_refresh()
    return figures


def network_summary_public() -> dict:
    """The landing page's summary: the network's headline figures only (no provider named)."""
    figures = network_dashboard_cached()
    return {"summary": figures["summary"], "history": figures["history"], "computed_at": figures["computed_at"],
            "window_hours": figures["window_hours"]}


# ---------------------------------------------------------------------------------------------
# A buyer organization's dashboard
# ---------------------------------------------------------------------------------------------

SPEND_SQL = """
WITH days AS (
    SELECT d AS day_start, d + interval '1 day' AS day_end
    FROM generate_series(%(first)s::timestamptz, %(last)s::timestamptz, interval '1 day') AS d
)
SELECT days.day_start, g.currency,
       sum(cardinality(g.device_ids) * g.price_per_card_hour_minor
           * extract(epoch FROM least(COALESCE(g.ended_at, %(now)s), days.day_end) - greatest(g.started_at, days.day_start))
       ) / 3600.0
FROM days
JOIN marketplace_reservationsegment g
  ON g.started_at < days.day_end AND COALESCE(g.ended_at, %(now)s) > days.day_start AND g.started_at < %(now)s
JOIN marketplace_reservation r ON r.id = g.reservation_id
WHERE {owner} = %(organization)s AND r.status NOT IN ('failed', 'cancelled')
GROUP BY days.day_start, g.currency
ORDER BY days.day_start, g.currency
"""


def _money_by_day(*, organization: Organization, now: datetime, owner: str) -> tuple[list[dict], dict[str, int]]:
    """Per day (viewer's zone) and currency: the service segments' card-seconds at their locked price,
    rounded per day (billing will round per invoice line; this is the running figure)."""
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=HISTORY_DAYS - 1)
    with connection.cursor() as cursor:
        cursor.execute(SPEND_SQL.format(owner=owner),
                       {"first": first, "last": today, "now": now, "organization": organization.pk})
        rows = cursor.fetchall()
    amounts = {(timezone.localtime(day).date(), currency): round(float(minor)) for day, currency, minor in rows}
    currencies = sorted({currency for _, currency in amounts})
    days = [(first + timedelta(days=offset)).date() for offset in range(HISTORY_DAYS)]
    series = [{"day": day, "amounts": [amounts.get((day, currency), 0) for currency in currencies]} for day in days]
    totals = {currency: sum(amounts.get((day, currency), 0) for day in days) for currency in currencies}
    return series, totals | {"_currencies": currencies}


# The cards each reservation holds now, with their usage over the window (full hours up to window_end).
RENTED_USAGE_SQL = """
SELECT a.reservation_id, a.device_id, lower(a.period),
       COALESCE(sum(u.busy_seconds), 0) / 3600.0,
       sum(u.utilization_mean * u.samples) / NULLIF(sum(u.samples), 0)
FROM inventory_deviceallocation a
LEFT JOIN marketplace_usagehourly u
  ON u.reservation_id = a.reservation_id AND u.device_id = a.device_id AND u.hour >= %(since)s AND u.hour < %(window_end)s
WHERE a.is_active AND a.purpose = 'reservation' AND a.period @> %(now)s::timestamptz
  AND a.reservation_id = ANY(%(reservations)s)
GROUP BY a.reservation_id, a.device_id, a.period
ORDER BY a.reservation_id, a.device_id
"""


def buyer_dashboard(*, organization: Organization, now: datetime | None = None) -> dict:
    """A buyer organization's spend, what it holds now and how much of it it uses, what is coming."""
    now = now or timezone.now()
    spend, totals = _money_by_day(organization=organization, now=now, owner="r.buyer_id")
    currencies = totals.pop("_currencies")
    reservations = Reservation.objects.filter(buyer=organization).select_related(
        "accelerator_model", "cluster__site"
    )
    active = list(reservations.filter(status__in=[Reservation.Status.ACTIVE, Reservation.Status.MIGRATING,
                                                   Reservation.Status.PROVISIONING]).order_by("end", "id"))
    upcoming = list(reservations.filter(status=Reservation.Status.REQUESTED, start__gt=now).order_by("start", "id"))
    window_end = _hour_floor(now)
    with connection.cursor() as cursor:
        cursor.execute(RENTED_USAGE_SQL, {"since": window_end - UTILIZATION_WINDOW, "window_end": window_end, "now": now,
                                          "reservations": [r.pk for r in active]})
        device_rows = cursor.fetchall()
    per_reservation: dict[int, list[dict]] = defaultdict(list)
    for reservation_id, device_id, held_since, busy_hours, mean in device_rows:
        mean = None if mean is None else round(float(mean), 1)
        # Silence counts only once the card has been held for a full rolled-up hour (a card handed over
        # minutes ago has had no chance to report).
        silent = mean is None and held_since <= window_end - timedelta(hours=1)
        per_reservation[reservation_id].append({
            "device": device_id, "busy_card_hours": round(float(busy_hours), 2), "utilization_mean": mean,
            "idle": silent or (mean is not None and mean < IDLE_UTILIZATION_PERCENT),
        })
    usage = []
    for reservation in active:
        devices = per_reservation.get(reservation.pk, [])
        busy = sum(device["busy_card_hours"] for device in devices)
        usage.append({
            "reservation": reservation, "cards": len(devices), "busy_card_hours": round(busy, 2),
            "utilization_percent": _share(busy, len(devices) * UTILIZATION_WINDOW.total_seconds() / 3600),
            "idle_devices": [device for device in devices if device["idle"]], "devices": devices,
        })
    return {
        "computed_at": now,
        "window_end": window_end,
        "currencies": currencies,
        "spend": spend,
        "spend_totals": totals,
        "active": active,
        "usage": usage,
        "idle_cards": sum(len(row["idle_devices"]) for row in usage),
        "upcoming": upcoming,
    }


# ---------------------------------------------------------------------------------------------
# A provider organization's dashboard
# ---------------------------------------------------------------------------------------------

EARNINGS_SQL = """
SELECT s.id, am.name, g.currency,
       sum(cardinality(g.device_ids) * g.price_per_card_hour_minor
           * extract(epoch FROM least(COALESCE(g.ended_at, %(now)s), %(now)s) - greatest(g.started_at, %(since)s))
       ) / 3600.0
FROM marketplace_reservationsegment g
JOIN marketplace_reservation r ON r.id = g.reservation_id
-- where the segment was served (its node), not where the reservation is now: after a move to another
-- site or provider, each row keeps the time it served (as the billing pages do)
JOIN inventory_node n ON n.id = g.node_id
JOIN inventory_cluster c ON c.id = n.cluster_id
JOIN inventory_site s ON s.id = c.site_id
JOIN inventory_acceleratormodel am ON am.id = n.accelerator_model_id
WHERE g.provider_id = %(organization)s AND r.status NOT IN ('failed', 'cancelled')
  AND g.started_at < %(now)s AND COALESCE(g.ended_at, %(now)s) > %(since)s
GROUP BY s.id, am.name, g.currency
"""


RELIABILITY_NODES_SHOWN = 20  # the worst nodes listed on the provider dashboard


def provider_dashboard(*, organization: Organization, now: datetime | None = None, days: int = 14) -> dict:
    """A provider's utilization and earnings per site and model, and its calendar of the next `days` days."""
    now = now or timezone.now()
    window_end = _hour_floor(now)
    window_hours = UTILIZATION_WINDOW.total_seconds() / 3600
    rows = _node_rows(now=now, provider=organization)
    since = now - timedelta(days=HISTORY_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(EARNINGS_SQL, {"now": now, "since": since, "organization": organization.pk})
        earnings = {(site_id, model, currency): round(float(minor)) for site_id, model, currency, minor in cursor.fetchall()}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    names = {}
    for row in rows:
        groups[(row["site_id"], row["model"])].append(row)
        names[row["site_id"]] = row["site"]
    for site_id, model, _currency in earnings:
        groups.setdefault((site_id, model), [])
    if any(site_id not in names for site_id, _ in groups):
        names.update(dict(Site.objects.filter(owner=organization).values_list("id", "name")))
    per_site_model = []
    for (site_id, model), members in groups.items():
        per_site_model.append({
            "site": names.get(site_id, ""), "site_id": site_id, "model": model,
            **_summarize(members, window_hours=window_hours),
            "earnings": sorted((currency, minor) for (s, m, currency), minor in earnings.items() if (s, m) == (site_id, model)),
        })
    per_site_model.sort(key=lambda item: (item["site"], item["model"]))
    horizon = now + timedelta(days=days)
    bookings = list(
        Reservation.objects.filter(cluster__site__owner=organization, status__in=Reservation.HOLDING,
                                   start__lt=horizon, end__gt=now)
        .select_related("accelerator_model", "cluster__site").order_by("start", "id")
    )
    windows = list(
        MaintenanceWindow.objects.filter(cluster__site__owner=organization, cancelled_at__isnull=True,
                                         period__overlap=(now, horizon))
        .select_related("cluster__site", "node").order_by("period")
    )
    calendar: dict = defaultdict(lambda: {"bookings": [], "maintenance": []})
    for reservation in bookings:
        calendar[timezone.localtime(max(reservation.start, now)).date()]["bookings"].append(reservation)
    for window in windows:
        calendar[timezone.localtime(max(window.period.lower, now)).date()]["maintenance"].append(window)
    summary = _summarize(rows, window_hours=window_hours)
    return {
        "computed_at": now,
        "window_end": window_end,
        "window_hours": window_hours,
        "summary": summary,
        "per_site_model": per_site_model,
        "earnings_since": since,
        "history": _history(now=now, listed_cards=summary["listed_cards"], provider=organization),
        "calendar": sorted(calendar.items()),
        "calendar_days": days,
        # The stored scores (inventory.reliability: 30 days of missed heartbeats, failed boots, failovers):
        # the provider's, and its live nodes that lost points, worst first.
        "reliability": {
            "score": provider_reliability_score(organization=organization),
            "nodes_below": list(
                Node.objects.filter(cluster__site__owner=organization, reliability_score__lt=100)
                .exclude(status=Node.Status.RETIRED)
                .order_by("reliability_score", "hostname").values("pk", "hostname", "reliability_score")[:RELIABILITY_NODES_SHOWN]
            ),
        },
    }
