"""Search and quote at national scale: 100,000 devices, 500,000 allocations.

`python -m bench --only search` runs `run()` on the seeded bench database (adding 5 calendar rows
per device when the seed has far fewer). Standalone, on an empty migrated database:

    DATABASE_URL=postgres://.../cf_market_bench python -m bench.search [--devices 100000]

fills a synthetic network once (50 sites, 500 clusters of two models, 12,500 nodes of 8 cards,
5 allocations per device between 240 days ago and 120 days ahead, ~17% utilization), then times
offer_search with random availability windows and a 1,024-card quote_build against the targets
(search p95 <= 50 ms, quote <= 200 ms), each beside the naive NOT EXISTS anti-join as baseline.
"""

import argparse
import os
import random
import sys
from datetime import timedelta

from django.db.models import F, Q, Sum

BENCH_SLUG = "bench-provider-0"


def _setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def network_fill(*, devices: int) -> None:
    """Insert the synthetic network with set-based SQL (a few seconds), unless it is there already."""
    from django.core.management import call_command
    from django.db import connection

    from inventory.models import AcceleratorModel
    from tests.factories import catalog_loaded

    call_command("migrate", verbosity=0)
    catalog_loaded()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM accounts_organization WHERE slug = %s", [BENCH_SLUG])
        if cursor.fetchone():
            return
    print(f"filling the network: {devices:,} devices ...", file=sys.stderr)
    models = list(AcceleratorModel.objects.order_by("id").values_list("id", flat=True))
    nodes = devices // 8
    clusters = max(nodes // 25, 1)
    sites = max(clusters // 10, 1)
    sql = f"""
    INSERT INTO accounts_organization (name, slug, kind, created_at)
      SELECT 'Bench provider ' || g, 'bench-provider-' || g, 'provider', now() FROM generate_series(0, 9) g;
    INSERT INTO inventory_site (name, country, city, lifecycle, certifications, created_at, updated_at, owner_id, province_id)
      SELECT 'Bench site ' || g, 'CN', 'City', CASE WHEN g % 25 = 24 THEN 'planned' ELSE 'online' END, '{{}}', now(), now(),
             (SELECT id FROM accounts_organization WHERE slug = 'bench-provider-' || (g % 10)),
             (SELECT id FROM inventory_province ORDER BY id OFFSET (g % 31) LIMIT 1)
      FROM generate_series(0, {sites - 1}) g;
    INSERT INTO inventory_cluster (name, fabric, fabric_bandwidth_gbps, created_at, site_id)
      SELECT 'bench-cluster-' || g, (ARRAY['infiniband', 'roce', 'ethernet'])[1 + g % 3], 400, now(), s.id
      FROM generate_series(0, {clusters - 1}) g
      JOIN LATERAL (SELECT id FROM inventory_site WHERE name = 'Bench site ' || (g % {sites})) s ON true;
    CREATE TEMP TABLE bench_models AS SELECT row_number() OVER (ORDER BY id) - 1 AS k, id FROM unnest(ARRAY[{','.join(map(str, models))}]::bigint[]) id;
    INSERT INTO inventory_node (hostname, card_count, cpu_model, cpu_cores, ram_gb, disk_gb, status, reported_model_name,
                                driver_version, software_versions, mismatch_reason, created_at, updated_at,
                                accelerator_model_id, cluster_id)
      SELECT 'bench-node-' || c.id || '-' || g, 8, '', 128, 2048, 15000,
             CASE WHEN (c.id + g) % 40 = 0 THEN 'maintenance' ELSE 'online' END, '', '', '{{}}',
             CASE WHEN (c.id + g) % 97 = 0 THEN 'agent reports a different model' ELSE '' END, now(), now(),
             (SELECT id FROM bench_models WHERE k = (c.id * 2 + (g % 2)) % {len(models)}), c.id
      FROM inventory_cluster c CROSS JOIN generate_series(0, 24) g WHERE c.name LIKE 'bench-cluster-%';
    INSERT INTO inventory_device (index, serial, node_id)
      SELECT g, '', n.id FROM inventory_node n CROSS JOIN generate_series(0, 7) g WHERE n.hostname LIKE 'bench-node-%';
    INSERT INTO inventory_offer (price_per_card_hour_minor, currency, min_duration_hours, max_duration_hours, is_active,
                                 created_at, updated_at, accelerator_model_id, cluster_id)
      SELECT DISTINCT ON (n.cluster_id, n.accelerator_model_id) 500 + (n.cluster_id * 37 + n.accelerator_model_id * 11) % 4000,
             CASE WHEN n.cluster_id % 10 = 0 THEN 'USD' ELSE 'CNY' END, 1, 2160, true, now(), now(), n.accelerator_model_id, n.cluster_id
      FROM inventory_node n WHERE n.hostname LIKE 'bench-node-%';
    INSERT INTO inventory_deviceallocation (period, booked_period, purpose, reservation_id, is_active, release_reason,
                                            created_at, device_id, node_id, cluster_id, accelerator_model_id)
      SELECT slot.p, slot.p,
             'reservation', -1, true, '', now(), d.id, n.id, n.cluster_id, n.accelerator_model_id
      FROM inventory_device d CROSS JOIN generate_series(0, 4) k
      CROSS JOIN (SELECT date_trunc('day', now()) - interval '240 days' AS t0) t
      CROSS JOIN LATERAL (SELECT tstzrange(t0 + (k * 72 + (d.id * 7 + k * 13) % 40) * interval '1 day',
                                           t0 + (k * 72 + (d.id * 7 + k * 13) % 40 + 5 + (d.id + k) % 16) * interval '1 day',
                                           '[)') AS p) slot
      JOIN inventory_node n ON n.id = d.node_id WHERE n.hostname LIKE 'bench-node-%';
    """  # noqa: S608 - only integers computed above are formatted in
    with connection.cursor() as cursor:
        cursor.execute(sql)  # no parameters: the % signs are SQL's
        cursor.execute("VACUUM ANALYZE")


ALLOCATION_TOP_UP_SQL = """
    -- 5 calendar rows per device that has none: slots of 72 days from 240 days ago, 5-20 days each
    -- (about 17% utilization, 1/3 of the rows in the future), marked reservation_id = -1. Like
    -- inventory.allocations, each row carries its device's node, cluster and model.
    INSERT INTO inventory_deviceallocation (period, booked_period, purpose, reservation_id, is_active, release_reason,
                                            created_at, device_id, node_id, cluster_id, accelerator_model_id)
      SELECT slot.p, slot.p,
             'reservation', -1, true, '', now(), d.id, n.id, n.cluster_id, n.accelerator_model_id
      FROM inventory_device d JOIN inventory_node n ON n.id = d.node_id
      CROSS JOIN generate_series(0, 4) k
      CROSS JOIN (SELECT date_trunc('day', now()) - interval '240 days' AS t0) t
      CROSS JOIN LATERAL (SELECT tstzrange(t0 + (k * 72 + (d.id * 7 + k * 13) % 40) * interval '1 day',
                                           t0 + (k * 72 + (d.id * 7 + k * 13) % 40 + 5 + (d.id + k) % 16) * interval '1 day',
                                           '[)') AS p) slot
      WHERE NOT EXISTS (SELECT 1 FROM inventory_deviceallocation a WHERE a.device_id = d.id)
    ON CONFLICT DO NOTHING;
"""


def allocations_top_up() -> None:
    """Give the seeded network its 500,000 calendar rows (5 per device) if it has far fewer."""
    from django.db import connection

    from inventory.models import Device, DeviceAllocation

    if DeviceAllocation.objects.count() >= 4 * Device.objects.count():
        _vacuum_analyze()
        return
    print("adding 5 allocations per device ...", flush=True)
    with connection.cursor() as cursor:
        try:
            cursor.execute(ALLOCATION_TOP_UP_SQL)
        except Exception as error:  # noqa: BLE001 - a device already busy then: report, and bench what is there
            print(f"could not add allocations: {error}", flush=True)
        # Fresh statistics and visibility map, as autovacuum would leave them: without the latter no
        # index-only scan is possible, and every figure would measure a just-loaded table.
        cursor.execute("VACUUM ANALYZE inventory_deviceallocation")


def _vacuum_analyze() -> None:
    """VACUUM ANALYZE the tables search reads, on every run, as autovacuum would have by then.

    Without it the figures depend on when autovacuum last came by: after a migration that rewrote
    every allocation (inventory 0007 set booked_period on all 500,000 rows) or after the booking
    bench's deletes, the visibility map is cleared, so no index-only scan is possible, and the
    capacity query was measured ~40% slower (p50 38.5 vs 27.5 ms) until a vacuum; tables the seed
    just filled (nodes, offers, sites) have no statistics at all until autovacuum's analyze.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("inventory_deviceallocation", "inventory_node", "inventory_device", "inventory_offer",
                      "inventory_cluster", "inventory_site", "inventory_maintenancewindow", "inventory_acceleratormodel"):
            cursor.execute(f"VACUUM ANALYZE {table}")  # a constant list of table names


def run() -> None:
    """Called by `python -m bench` on its seeded bench database."""
    from django.db import connection
    from django.utils import timezone

    from bench.harness import measure
    from inventory.allocations import period_range
    from inventory.models import Device, DeviceAllocation
    from marketplace.selectors import offer_search, quote_build

    allocations_top_up()
    print(f"devices: {Device.objects.count():,}  allocations: {DeviceAllocation.objects.count():,}", flush=True)
    rng = random.Random(42)
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)

    def window():
        start = today + timedelta(days=rng.randint(1, 100), hours=rng.randint(0, 23))
        return start, start + timedelta(days=rng.randint(1, 7))

    def naive_anti_join():
        start, end = window()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM inventory_device d WHERE NOT EXISTS (SELECT 1 FROM inventory_deviceallocation a "
                "WHERE a.device_id = d.id AND a.is_active AND a.period && %s)", [period_range(start, end)]
            )
            cursor.fetchone()

    def first_page(results):
        return results[:50]

    _check_against_naive_recount(*window())
    baseline = measure("baseline: naive NOT EXISTS free-device count", naive_anti_join, runs=30)
    measure("search, window, sorted by price per ECU-hour (page 1)",
            lambda: first_page(offer_search(**dict(zip(("start", "end"), window(), strict=True)))),
            runs=100, baseline=baseline, target_ms=50)
    measure("search, window + min free cards 8 (every offer counted)",
            lambda: first_page(offer_search(**dict(zip(("start", "end"), window(), strict=True)), min_free_cards=8)),
            runs=50, baseline=baseline, target_ms=50)
    measure("search, CUDA/CANN >= 64 GB, sorted by free cards",
            lambda: first_page(offer_search(**dict(zip(("start", "end"), window(), strict=True)), stacks=["cuda", "cann"],
                                            min_memory_gb=64, sort="-free_cards")),
            runs=50, baseline=baseline, target_ms=50)

    def quote_1024():
        start, _ = window()
        quote_build(cards=1024, start=start, end=start + timedelta(days=3), currency="CNY")

    measure("quote for 1,024 cards (every offer explained)", quote_1024, runs=30, baseline=baseline, target_ms=200)

    from inventory.market_selectors import free_device_ids_for_booking
    from inventory.models import Offer

    largest = Offer.objects.filter(is_active=True, cluster__site__lifecycle="online").annotate(
        cards=Sum("cluster__nodes__card_count", filter=Q(cluster__nodes__accelerator_model=F("accelerator_model")))
    ).order_by("-cards").first()

    def pick_1024():
        start, _ = window()
        free_device_ids_for_booking(cluster_id=largest.cluster_id, accelerator_model_id=largest.accelerator_model_id,
                                    start=start, end=start + timedelta(days=3), limit=1024)

    measure(f"device picking: 1,024 free cards of a {largest.cards:,}-card offer", pick_1024, runs=30, baseline=baseline)


_NAIVE_FREE_PER_OFFER_SQL = """
    SELECT o.id, count(d.id)
    FROM inventory_offer o
    JOIN inventory_node n ON n.cluster_id = o.cluster_id AND n.accelerator_model_id = o.accelerator_model_id
    JOIN inventory_device d ON d.node_id = n.id
    WHERE o.is_active AND n.status = 'online' AND n.mismatch_reason = ''
      AND NOT EXISTS (SELECT 1 FROM inventory_maintenancewindow mw
                      WHERE mw.cluster_id = n.cluster_id AND (mw.node_id IS NULL OR mw.node_id = n.id)
                        AND mw.cancelled_at IS NULL AND mw.period && %(window)s)
      AND NOT EXISTS (SELECT 1 FROM inventory_deviceallocation a
                      WHERE a.device_id = d.id AND a.is_active AND a.period && %(window)s)
    GROUP BY o.id
"""


def _check_against_naive_recount(start, end) -> None:
    """Free cards per offer must equal a device-by-device recount: speed is worth nothing otherwise."""
    from django.db import connection

    from inventory.allocations import period_range
    from inventory.market_selectors import offer_capacity
    from inventory.models import Offer

    offer_ids = list(Offer.objects.filter(is_active=True).values_list("id", flat=True))
    fast = {offer_id: capacity.cards_free for offer_id, capacity in offer_capacity(offer_ids=offer_ids, start=start, end=end).items()}
    with connection.cursor() as cursor:
        cursor.execute(_NAIVE_FREE_PER_OFFER_SQL, {"window": period_range(start, end)})
        naive = dict(cursor.fetchall())
    fast = {offer_id: free for offer_id, free in fast.items() if free}
    verdict = "agree" if fast == naive else "DISAGREE"
    print(f"free cards per offer for {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}: {sum(naive.values()):,} by naive "
          f"recount, {sum(fast.values()):,} by offer_capacity - {verdict}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    args = parser.parse_args(argv)
    _setup_django()
    network_fill(devices=args.devices)
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
