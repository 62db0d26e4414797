"""Every dashboard figure equals direct SQL over the same seeded network (written here, apart from
marketplace/dashboard.py: joins through the device rather than the copied node ids, range operators
rather than least/greatest), and each organization sees only its own.

The network: seed_demo (400 cards) and seed_demo_market (real bookings through the booking service),
the whole calendar moved back a day so the first bookings of every buyer have run for a day, moved
along by provisioning (the nodes report them running), one released early, one failed while running; node agents' samples over the last 30 hours
(rented cards busy, one rented card idle, some unrented cards busy) rolled up by the metering service.
"""
# ruff: noqa: S608 - the SQL below interpolates only this file's constants (column expressions), never input

from collections import defaultdict
from datetime import UTC, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organization, User
from inventory.allocations import device_allocations_release
from inventory.management.demo_network import DEMO_LOGINS
from inventory.models import Device, DeviceAllocation
from marketplace import dashboard
from marketplace.metering.services import usage_rollup_refresh, usage_samples_ingest
from marketplace.models import Reservation, UsageHourly
from marketplace.services import reservation_release, reservation_set_status
from tests.marketplace.metering_helpers import sample
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

SHIFT = timedelta(days=1, hours=1)
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the SQL below names it too


def sql(query: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params or {})
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def network(catalog):
    call_command("seed_demo", "--seed", "42", "--cards", "400", "--no-progress", stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo_market", stdout=StringIO())
    seeded_at = timezone.now()
    # Move the whole calendar (bookings and maintenance alike, so nothing new overlaps) back by SHIFT.
    shift = {"shift": SHIFT}
    sql('UPDATE marketplace_reservation SET start = start - %(shift)s, "end" = "end" - %(shift)s, '
        "booked_end = booked_end - %(shift)s", shift)
    # The no-overlap constraint is checked row by row, so a row moved back could meet a neighbour not moved
    # yet: go 10 years further back first (nothing lives there), then forward by those 10 years.
    far = timedelta(days=3650)
    for step in (SHIFT + far, -far):
        sql("UPDATE inventory_deviceallocation SET period = tstzrange(lower(period) - %(shift)s, upper(period) - %(shift)s, '[)'), "
            "booked_period = tstzrange(lower(booked_period) - %(shift)s, upper(booked_period) - %(shift)s, '[)'), "
            "released_at = released_at - %(shift)s", {"shift": step})
    sql("UPDATE inventory_maintenancewindow SET period = tstzrange(lower(period) - %(shift)s, upper(period) - %(shift)s, '[)')", shift)
    # The bookings that started "within minutes" of seeding start 1 h before yesterday's seeding time: their
    # nodes report them running then (provisioning, as the agents would).
    handed = seeded_at - SHIFT + timedelta(minutes=10)
    started = Reservation.objects.filter(status=Reservation.Status.REQUESTED, start__lte=handed, end__gt=handed).order_by("id")
    for reservation in started:
        hand_over(reservation, at=handed)
    assert Reservation.objects.filter(status=Reservation.Status.ACTIVE).count() >= 4
    active = list(Reservation.objects.filter(status=Reservation.Status.ACTIVE).order_by("id"))
    # One buyer gives its cards back early (the allocation is truncated, the segment closed).
    reservation_release(reservation=active[0], actor=None, reason="done early (test)")
    # Another fails while running, as the failure paths of marketplace.services do it: its allocations
    # are released (inactive, period untouched) and nothing of it is billed.
    failed_at = timezone.now() - timedelta(minutes=30)
    with transaction.atomic():
        device_allocations_release(reservation_id=active[1].pk, at=failed_at, reason=DeviceAllocation.ReleaseReason.FAILED)
        reservation_set_status(reservation=active[1], status=Reservation.Status.FAILED, reason="hardware failed (test)",
                               at=failed_at)
    assert DeviceAllocation.objects.filter(reservation_id=active[1].pk, is_active=False, period__contains=timezone.now()).exists()
    # Node agents' samples: six 10-minute windows an hour over the last 30 hours.
    now = timezone.now()
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    windows = [top - timedelta(hours=h) + timedelta(minutes=10 * m) for h in range(1, 31) for m in range(6)]
    devices = defaultdict(list)  # node -> [(device, utilization)]
    for index, reservation in enumerate(active[1:]):
        rows = DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True).order_by("device_id")
        for position, allocation in enumerate(rows[:3]):
            # The last active reservation's first card does nothing: the buyer's idle card.
            utilization = 0.0 if (index == len(active) - 2 and position == 0) else 20.0 + 15 * position + index
            devices[allocation.node_id].append((allocation.device_id, utilization))
    rented_devices = DeviceAllocation.objects.filter(purpose="reservation").values("device_id")
    for device in Device.objects.filter(node__status="online").exclude(id__in=rented_devices).order_by("id")[:6]:
        devices[device.node_id].append((device.pk, 70.0))
    for node_id, node_devices in devices.items():
        batch = [sample(device, start, seconds=600, utilization=utilization) for device, utilization in node_devices for start in windows]
        usage_samples_ingest(node_id=node_id, samples=batch, now=now)
    while usage_rollup_refresh(now=now):
        pass
    assert UsageHourly.objects.filter(reservation__isnull=False).exists()
    assert UsageHourly.objects.filter(reservation__isnull=True).exists()
    return {"now": timezone.now(), "active": active}


LISTED_NODES = """
SELECT n.id FROM inventory_node n
JOIN inventory_cluster c ON c.id = n.cluster_id JOIN inventory_site s ON s.id = c.site_id
WHERE n.status = 'online' AND n.mismatch_reason = '' AND s.lifecycle = 'online'
  AND (n.cluster_id, n.accelerator_model_id) IN (SELECT cluster_id, accelerator_model_id FROM inventory_offer WHERE is_active)
"""
NODE_DIMENSIONS = """
FROM inventory_node n
JOIN inventory_cluster c ON c.id = n.cluster_id JOIN inventory_site s ON s.id = c.site_id
JOIN accounts_organization o ON o.id = s.owner_id JOIN inventory_acceleratormodel am ON am.id = n.accelerator_model_id
LEFT JOIN inventory_province p ON p.id = s.province_id LEFT JOIN inventory_nationalhub h ON h.id = p.hub_id
"""
DIMENSION_SQL = {
    "hub": "COALESCE(h.name, '(none)')",
    "province": "COALESCE(p.name, '(none)')",
    "vendor": "am.vendor",
    "model": "am.name",
    "provider": "o.name",
}


def expected_by(dimension: str, *, now, window_end, provider_id=None) -> dict:
    """{group: (listed cards, listed ECU, rented cards, busy card-hours)} by direct SQL."""
    column = DIMENSION_SQL[dimension]
    scope = "AND s.owner_id = %(provider)s" if provider_id else ""
    params = {"now": now, "since": window_end - timedelta(hours=24), "window_end": window_end, "provider": provider_id}
    figures = defaultdict(lambda: [0, 0.0, 0, 0.0])
    for name, cards, ecu in sql(
        f"SELECT {column}, sum(n.card_count), sum(n.card_count * COALESCE(am.ecu_per_card, 0)) {NODE_DIMENSIONS} "
        f"WHERE n.id IN ({LISTED_NODES}) {scope} GROUP BY 1", params
    ):
        figures[name][0:2] = [cards, float(ecu)]
    for name, cards in sql(
        f"SELECT {column}, count(DISTINCT a.device_id) FROM inventory_deviceallocation a "
        f"JOIN inventory_device d ON d.id = a.device_id JOIN LATERAL (SELECT 1) x ON TRUE "
        f"{NODE_DIMENSIONS.replace('FROM inventory_node n', 'JOIN inventory_node n ON n.id = d.node_id')} "
        f"WHERE a.is_active AND a.purpose = 'reservation' AND lower(a.period) <= %(now)s AND upper(a.period) > %(now)s {scope} "
        f"GROUP BY 1", params
    ):
        figures[name][2] = cards
    for name, hours in sql(
        f"SELECT {column}, sum(u.busy_seconds) / 3600 FROM marketplace_usagehourly u "
        f"JOIN inventory_device d ON d.id = u.device_id "
        f"{NODE_DIMENSIONS.replace('FROM inventory_node n', 'JOIN inventory_node n ON n.id = d.node_id')} "
        f"WHERE u.hour >= %(since)s AND u.hour < %(window_end)s {scope} GROUP BY 1", params
    ):
        figures[name][3] = float(hours)
    return dict(figures)


def as_figures(rows: list[dict]) -> dict:
    return {row["name"]: [row["listed_cards"], float(row["listed_ecu"]), row["rented_cards"], row["busy_card_hours"]]
            for row in rows}


def approx(figures: dict) -> dict:
    return {name: [values[0], pytest.approx(values[1]), values[2], pytest.approx(values[3], abs=0.01)]
            for name, values in figures.items()}


def test_the_network_dashboard_equals_direct_sql(network):
    now = network["now"]
    # Days are the viewer's days: midnight to midnight in Asia/Shanghai (UTC+8), not UTC.
    with timezone.override(SHANGHAI):
        figures = dashboard.network_dashboard(now=now)
    window_end = now.replace(minute=0, second=0, microsecond=0)
    assert figures["window_end"] == window_end

    # every dimension: listed cards and ECU, rented cards now, busy card-hours in the window
    for group in figures["by"]:
        expected = expected_by(group["key"], now=now, window_end=window_end)
        assert as_figures(group["rows"]) == approx(expected), group["key"]
        for row in group["rows"]:
            listed_hours = expected[row["name"]][0] * 24
            if listed_hours:
                assert row["utilization_percent"] == pytest.approx(100 * expected[row["name"]][3] / listed_hours, abs=0.06)
            else:
                assert row["utilization_percent"] is None

    # the headline figures
    (listed,) = sql(f"SELECT sum(card_count) FROM inventory_node WHERE id IN ({LISTED_NODES})")[0]
    (rented,) = sql("SELECT count(DISTINCT device_id) FROM inventory_deviceallocation WHERE is_active AND purpose = 'reservation' "
                    "AND period @> %(now)s::timestamptz", {"now": now})[0]
    (busy,) = sql("SELECT sum(busy_seconds) / 3600 FROM marketplace_usagehourly WHERE hour >= %(since)s AND hour < %(end)s",
                  {"since": window_end - timedelta(hours=24), "end": window_end})[0]
    summary = figures["summary"]
    assert (summary["listed_cards"], summary["rented_cards"]) == (listed, rented)
    assert summary["busy_card_hours"] == pytest.approx(float(busy), abs=0.01)
    assert summary["utilization_percent"] == pytest.approx(100 * float(busy) / (listed * 24), abs=0.06)
    # the seeded network has every kind of figure (so the comparisons above compare something)
    assert listed > 0 and rented > 0 and busy > 0

    # per day: rented card-hours (effective periods, cut at a release) and busy card-hours
    days = [row["day"] for row in figures["history"]]
    assert len(days) == 30 and days[-1] == timezone.localdate(now, SHANGHAI)
    rented_by_day = dict(sql(
        """
        SELECT local_day::date, sum(extract(epoch FROM upper(x.r) - lower(x.r))) / 3600
        FROM generate_series(%(first)s::date::timestamp, %(last)s::date::timestamp, interval '1 day') AS local_day
        CROSS JOIN LATERAL (SELECT local_day AT TIME ZONE 'Asia/Shanghai' AS d) AS midnight
        JOIN LATERAL (
            SELECT tstzrange(lower(a.period), CASE WHEN a.is_active OR a.released_at IS NULL THEN upper(a.period)
                                                   ELSE greatest(lower(a.period), least(upper(a.period), a.released_at)) END, '[)')
                   * tstzrange(d, d + interval '1 day', '[)') AS r
            FROM inventory_deviceallocation a WHERE a.purpose = 'reservation'
        ) x ON NOT isempty(x.r)
        GROUP BY 1
        """, {"first": days[0].isoformat(), "last": days[-1].isoformat()}))
    busy_by_day = dict(sql("SELECT (hour AT TIME ZONE 'Asia/Shanghai')::date, sum(busy_seconds) / 3600 FROM marketplace_usagehourly GROUP BY 1"))
    for row in figures["history"]:
        assert row["rented_card_hours"] == pytest.approx(float(rented_by_day.get(row["day"], 0)), abs=0.01), row["day"]
        assert row["busy_card_hours"] == pytest.approx(float(busy_by_day.get(row["day"], 0)), abs=0.01), row["day"]
        assert row["listed_card_hours"] == listed * 24
    assert sum(row["rented_card_hours"] for row in figures["history"]) > 0

    # the national hubs: all 8, each with its own figures and its sites being built
    hubs = {hub["name"]: hub for hub in figures["hubs"]}
    assert len(hubs) == 8 == sql("SELECT count(*) FROM inventory_nationalhub")[0][0]
    expected_hubs = expected_by("hub", now=now, window_end=window_end)
    building = dict(sql("SELECT h.name, count(*) FROM inventory_site s JOIN inventory_province p ON p.id = s.province_id "
                        "JOIN inventory_nationalhub h ON h.id = p.hub_id WHERE s.lifecycle IN ('planned', 'under_construction') "
                        "GROUP BY 1"))
    for name, hub in hubs.items():
        assert [hub["listed_cards"], hub["rented_cards"]] == [expected_hubs.get(name, [0, 0, 0, 0])[i] for i in (0, 2)]
        assert hub["sites_planned"] + hub["sites_under_construction"] == building.get(name, 0)
    (planned, building_now) = sql("SELECT count(*) FILTER (WHERE lifecycle = 'planned'), "
                                  "count(*) FILTER (WHERE lifecycle = 'under_construction') FROM inventory_site")[0]
    assert (figures["pipeline"]["sites_planned"], figures["pipeline"]["sites_under_construction"]) == (planned, building_now)


def test_the_buyer_dashboard_equals_direct_sql_and_shows_only_the_buyers_own(network):
    now = network["now"]
    buyers = Organization.objects.filter(reservations__isnull=False).distinct().order_by("id")
    assert buyers.count() >= 2
    idle_seen = 0
    for buyer in buyers:
        with timezone.override(SHANGHAI):
            figures = dashboard.buyer_dashboard(organization=buyer, now=now)
        # active and upcoming: exactly the buyer's own
        active = [r for (r,) in sql("SELECT id FROM marketplace_reservation WHERE buyer_id = %(b)s AND status IN "
                                     "('active', 'migrating', 'provisioning') ORDER BY id", {"b": buyer.pk})]
        upcoming = [r for (r,) in sql("SELECT id FROM marketplace_reservation WHERE buyer_id = %(b)s AND status = 'requested' "
                                       "AND start > %(now)s ORDER BY start, id", {"b": buyer.pk, "now": now})]
        assert sorted(r.pk for r in figures["active"]) == active
        assert [r.pk for r in figures["upcoming"]] == upcoming
        # spend per day and currency: segments' card-seconds x locked price, rounded per day
        spend = defaultdict(int)
        for day, currency, minor in sql(
            """
            SELECT local_day::date, g.currency, sum(cardinality(g.device_ids) * g.price_per_card_hour_minor * extract(epoch FROM
                   upper(tstzrange(g.started_at, COALESCE(g.ended_at, %(now)s)) * tstzrange(d, d + interval '1 day'))
                 - lower(tstzrange(g.started_at, COALESCE(g.ended_at, %(now)s)) * tstzrange(d, d + interval '1 day'))) / 3600)
            FROM generate_series(%(first)s::date::timestamp, %(last)s::date::timestamp, interval '1 day') AS local_day
        CROSS JOIN LATERAL (SELECT local_day AT TIME ZONE 'Asia/Shanghai' AS d) AS midnight
            JOIN marketplace_reservationsegment g ON tstzrange(g.started_at, COALESCE(g.ended_at, %(now)s)) && tstzrange(d, d + interval '1 day')
            JOIN marketplace_reservation r ON r.id = g.reservation_id
            WHERE r.buyer_id = %(b)s AND r.status NOT IN ('failed', 'cancelled')
            GROUP BY 1, 2
            """, {"now": now, "b": buyer.pk, "first": figures["spend"][0]["day"].isoformat(),
                  "last": figures["spend"][-1]["day"].isoformat()}):
            spend[(day, currency)] = round(float(minor))
        shown = {(row["day"], currency): amount for row in figures["spend"]
                 for currency, amount in zip(figures["currencies"], row["amounts"], strict=True) if amount}
        assert shown == {key: value for key, value in spend.items() if value}
        if active:
            assert shown, "a buyer with running reservations has spent something"
        # utilization of each rented card over the window; idle cards called out
        window_end = now.replace(minute=0, second=0, microsecond=0)
        for row in figures["usage"]:
            reservation = row["reservation"]
            devices = sql(
                """
                SELECT a.device_id, lower(a.period),
                       (SELECT sum(u.busy_seconds) FROM marketplace_usagehourly u WHERE u.reservation_id = a.reservation_id
                          AND u.device_id = a.device_id AND u.hour >= %(since)s AND u.hour < %(end)s) / 3600,
                       (SELECT sum(u.utilization_mean * u.samples) / sum(u.samples) FROM marketplace_usagehourly u
                          WHERE u.reservation_id = a.reservation_id AND u.device_id = a.device_id
                            AND u.hour >= %(since)s AND u.hour < %(end)s)
                FROM inventory_deviceallocation a
                WHERE a.reservation_id = %(r)s AND a.is_active AND lower(a.period) <= %(now)s AND upper(a.period) > %(now)s
                ORDER BY a.device_id
                """, {"r": reservation.pk, "since": window_end - timedelta(hours=24), "end": window_end, "now": now})
            assert [d["device"] for d in row["devices"]] == [device for device, _, _, _ in devices]
            assert row["busy_card_hours"] == pytest.approx(sum(float(busy or 0) for _, _, busy, _ in devices), abs=0.02)
            idle = [device for device, held_since, _, mean in devices
                    if (mean is None and held_since <= window_end - timedelta(hours=1))
                    or (mean is not None and float(mean) < dashboard.IDLE_UTILIZATION_PERCENT)]
            assert [d["device"] for d in row["idle_devices"]] == idle
            idle_seen += sum(1 for _, _, _, mean in devices if mean is not None and float(mean) == 0)
        # nothing of another buyer
        others = set(Reservation.objects.exclude(buyer=buyer).values_list("pk", flat=True))
        assert not others & {r.pk for r in figures["active"] + figures["upcoming"]}
    assert idle_seen == 1  # the card that reported 0% is called idle


def test_the_provider_dashboard_equals_direct_sql_and_shows_only_the_providers_own(network):
    now = network["now"]
    window_end = now.replace(minute=0, second=0, microsecond=0)
    providers = Organization.objects.filter(sites__clusters__offers__reservations__isnull=False).distinct().order_by("id")
    assert providers.exists()
    for provider in providers:
        figures = dashboard.provider_dashboard(organization=provider, now=now)
        expected = defaultdict(lambda: [0, 0.0, 0, 0.0])
        # per site and model, by direct SQL (the dimensions' SQL with a site+model key)
        DIMENSION_SQL["site_model"] = "s.name || ' / ' || am.name"
        try:
            expected.update(expected_by("site_model", now=now, window_end=window_end, provider_id=provider.pk))
        finally:
            del DIMENSION_SQL["site_model"]
        shown = {f"{row['site']} / {row['model']}": [row["listed_cards"], float(row["listed_ecu"]), row["rented_cards"],
                                                      row["busy_card_hours"]] for row in figures["per_site_model"]}
        assert {k: v for k, v in shown.items() if any(v)} == approx({k: v for k, v in expected.items() if any(v)})
        earnings = {
            (f"{site} / {model}", currency): round(float(minor)) for site, model, currency, minor in sql(
                """
                SELECT s.name, am.name, g.currency, sum(cardinality(g.device_ids) * g.price_per_card_hour_minor * extract(epoch FROM
                       upper(tstzrange(g.started_at, COALESCE(g.ended_at, %(now)s)) * tstzrange(%(since)s, %(now)s))
                     - lower(tstzrange(g.started_at, COALESCE(g.ended_at, %(now)s)) * tstzrange(%(since)s, %(now)s))) / 3600)
                FROM marketplace_reservationsegment g JOIN marketplace_reservation r ON r.id = g.reservation_id
                JOIN inventory_node n ON n.id = g.node_id JOIN inventory_cluster c ON c.id = n.cluster_id
                JOIN inventory_site s ON s.id = c.site_id JOIN inventory_acceleratormodel am ON am.id = n.accelerator_model_id
                WHERE s.owner_id = %(p)s AND r.status NOT IN ('failed', 'cancelled')
                  AND tstzrange(g.started_at, COALESCE(g.ended_at, %(now)s)) && tstzrange(%(since)s, %(now)s)
                GROUP BY 1, 2, 3
                """, {"now": now, "since": now - timedelta(days=30), "p": provider.pk})
        }
        shown_earnings = {(f"{row['site']} / {row['model']}", currency): minor
                          for row in figures["per_site_model"] for currency, minor in row["earnings"]}
        assert shown_earnings == earnings
        # the calendar: the provider's holding bookings and live maintenance windows of the next 14 days
        bookings = {r for (r,) in sql(
            "SELECT r.id FROM marketplace_reservation r JOIN inventory_cluster c ON c.id = r.cluster_id "
            "JOIN inventory_site s ON s.id = c.site_id WHERE s.owner_id = %(p)s "
            "AND r.status IN ('requested', 'provisioning', 'active', 'migrating') "
            "AND tstzrange(r.start, r.\"end\") && tstzrange(%(now)s, %(now)s + interval '14 days')", {"p": provider.pk, "now": now})}
        windows = {w for (w,) in sql(
            "SELECT w.id FROM inventory_maintenancewindow w JOIN inventory_cluster c ON c.id = w.cluster_id "
            "JOIN inventory_site s ON s.id = c.site_id WHERE s.owner_id = %(p)s AND w.cancelled_at IS NULL "
            "AND w.period && tstzrange(%(now)s, %(now)s + interval '14 days')", {"p": provider.pk, "now": now})}
        assert {r.pk for _, day in figures["calendar"] for r in day["bookings"]} == bookings
        assert {w.pk for _, day in figures["calendar"] for w in day["maintenance"]} == windows
    assert any(row["earnings"] for provider in providers
               for row in dashboard.provider_dashboard(organization=provider, now=now)["per_site_model"])


def test_who_may_open_which_dashboard(client, network):
    buyer = User.objects.get(email=DEMO_LOGINS["buyer"])
    provider = User.objects.get(email=DEMO_LOGINS["provider"])
    operator = User.objects.get(email=DEMO_LOGINS["operator"])
    finance = User.objects.get(email=DEMO_LOGINS["finance"])
    expected = {
        buyer: {"/network/": 403, "/market/dashboard/": 200, "/provider/dashboard/": 403},
        provider: {"/network/": 403, "/market/dashboard/": 403, "/provider/dashboard/": 200},
        operator: {"/network/": 200, "/market/dashboard/": 403, "/provider/dashboard/": 403},
        finance: {"/network/": 403, "/market/dashboard/": 403, "/provider/dashboard/": 403},
    }
    for user, answers in expected.items():
        client.force_login(user)
        assert {url: client.get(url).status_code for url in answers} == answers, user.email
    client.logout()
    for url in ("/network/", "/market/dashboard/", "/provider/dashboard/"):
        assert client.get(url).status_code == 302  # to the sign-in page


def test_a_buyer_page_shows_its_own_reservations_and_not_another_buyers(client, network):
    buyer = User.objects.get(email=DEMO_LOGINS["buyer"])
    organization = buyer.memberships.get().organization
    client.force_login(buyer)
    body = client.get("/market/dashboard/").content.decode()
    own = Reservation.objects.filter(buyer=organization, status__in=Reservation.HOLDING)
    other = Reservation.objects.exclude(buyer=organization).filter(status__in=Reservation.HOLDING)
    assert own.exists() and other.exists()
    for reservation in own:
        assert f'/market/reservations/{reservation.pk}/"' in body
    for reservation in other:
        assert f'/market/reservations/{reservation.pk}/"' not in body


def test_beat_keeps_the_network_figures_warm_and_the_page_reads_them(client, settings, network):
    from django.core.cache import cache

    from marketplace.tasks import network_dashboard_refresh_task

    assert "marketplace.network_dashboard_refresh" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    # Given the beat task has run
    result = network_dashboard_refresh_task()
    cached = cache.get(dashboard.NETWORK_DASHBOARD_CACHE_KEY)
    assert result == {"listed_cards": cached["summary"]["listed_cards"], "rented_cards": cached["summary"]["rented_cards"]}
    # When an operator opens the page, it shows those figures without computing them again
    client.force_login(User.objects.get(email=DEMO_LOGINS["operator"]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dashboard, "network_dashboard", lambda **kwargs: pytest.fail("computed on a page view"))
        body = client.get("/network/").content.decode()
    listed = body.split('data-testid="dash-listed-cards">')[1].split("<")[0]
    assert listed.replace(",", "") == str(cached["summary"]["listed_cards"])
