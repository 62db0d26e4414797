"""Reads of the device calendar that the marketplace needs, as set-based SQL.

Availability design (targets: 100,000 devices, 500,000 allocations, search p95 <= 50 ms):

* Capacity is counted per offer, i.e. per (cluster, accelerator model), at node level first: the
  node's status, its agent flag and any maintenance window overlapping the window are decided once
  per node (12,500 rows at national scale), not per device.
* Busy devices come from ONE range scan of the allocations overlapping the window (`period && w`,
  served by the GiST index of the exclusion constraint), reduced to distinct device ids and hashed.
  The devices of the candidate nodes are then left-joined against that set - no per-device
  NOT EXISTS probe (that anti-join is the ~150 ms baseline).
* Everything is aggregated in PostgreSQL with COUNT(...) FILTER (...), one row per offer; Python
  never loops over devices or allocations.

Maintenance windows normally materialize as allocations (inventory.allocations); a window that is
not (yet) materialized still blacks out its cluster or node here, so the answer never promises
cards that are in maintenance.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from inventory.allocations import period_range

_CAPACITY_SQL = """
WITH nodes AS MATERIALIZED (
    -- node-level facts, decided once per node rather than once per device
    SELECT n.id, o.id AS offer_id,
           n.status = 'online' AS is_online,
           n.mismatch_reason <> '' AS is_flagged,
           EXISTS (
               SELECT 1 FROM inventory_maintenancewindow mw
               WHERE mw.cluster_id = n.cluster_id AND (mw.node_id IS NULL OR mw.node_id = n.id)
                 AND mw.cancelled_at IS NULL AND mw.period && %(window)s
           ) AS in_maintenance
    FROM inventory_offer o
    JOIN inventory_node n ON n.cluster_id = o.cluster_id AND n.accelerator_model_id = o.accelerator_model_id
    WHERE o.id = ANY(%(offer_ids)s)
),
devices AS (
    SELECT d.id, nodes.offer_id, nodes.is_online, nodes.is_flagged, nodes.in_maintenance
    FROM nodes JOIN inventory_device d ON d.node_id = nodes.id
),
busy AS (
    -- the calendar entries of these devices overlapping the window, one row per device. PostgreSQL
    -- picks per-device GiST probes for a few offers, one range scan + hash join for many.
    -- 'maintenance' sorts before 'reservation', so min() prefers it.
    SELECT a.device_id, min(a.purpose) AS purpose
    FROM inventory_deviceallocation a
    JOIN devices ON devices.id = a.device_id
    WHERE a.is_active AND a.period && %(window)s
    GROUP BY a.device_id
)
SELECT dv.offer_id,
       count(*) AS cards_total,
       count(*) FILTER (WHERE NOT dv.is_online) AS cards_not_online,
       count(*) FILTER (WHERE dv.is_online AND dv.is_flagged) AS cards_flagged,
       count(*) FILTER (WHERE dv.is_online AND NOT dv.is_flagged
                        AND (dv.in_maintenance OR busy.purpose = 'maintenance')) AS cards_in_maintenance,
       count(*) FILTER (WHERE dv.is_online AND NOT dv.is_flagged AND NOT dv.in_maintenance
                        AND busy.purpose = 'reservation') AS cards_booked,
       count(*) FILTER (WHERE dv.is_online AND NOT dv.is_flagged AND NOT dv.in_maintenance
                        AND busy.device_id IS NULL) AS cards_free
FROM devices dv
LEFT JOIN busy ON busy.device_id = dv.id
GROUP BY dv.offer_id
"""


@dataclass(frozen=True)
class OfferCapacity:
    """Cards of one offer in one window. free = total - not online - flagged - maintenance - booked."""

    cards_total: int = 0
    cards_not_online: int = 0
    cards_flagged: int = 0
    cards_in_maintenance: int = 0
    cards_booked: int = 0
    cards_free: int = 0


def offer_capacity(*, offer_ids: list[int], start: datetime, end: datetime) -> dict[int, OfferCapacity]:
    """Per offer id: its cards in [start, end), split by why they are not free. Offers with no node are absent."""
    if not offer_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_CAPACITY_SQL, {"offer_ids": list(offer_ids), "window": period_range(start, end)})
        return {row[0]: OfferCapacity(*row[1:]) for row in cursor.fetchall()}


_FREE_DEVICES_SQL = """
WITH nodes AS (
    SELECT n.id
    FROM inventory_node n
    JOIN inventory_cluster c ON c.id = n.cluster_id
    JOIN inventory_site s ON s.id = c.site_id
    WHERE n.cluster_id = %(cluster_id)s AND n.accelerator_model_id = %(model_id)s
      AND n.status = 'online' AND n.mismatch_reason = '' AND s.lifecycle = 'online'
      AND NOT EXISTS (
          SELECT 1 FROM inventory_maintenancewindow mw
          WHERE mw.cluster_id = n.cluster_id AND (mw.node_id IS NULL OR mw.node_id = n.id)
            AND mw.cancelled_at IS NULL AND mw.period && %(window)s
      )
),
free AS (
    SELECT d.id, d.node_id, d.index
    FROM inventory_device d
    JOIN nodes ON nodes.id = d.node_id
    WHERE NOT EXISTS (
        SELECT 1 FROM inventory_deviceallocation a
        WHERE a.device_id = d.id AND a.is_active AND a.period && %(window)s
    )
)
SELECT id FROM (
    SELECT id, node_id, index, count(*) OVER (PARTITION BY node_id) AS free_on_node FROM free
) ranked
ORDER BY free_on_node DESC, node_id, index
LIMIT %(limit)s
"""


def free_device_ids_for_booking(*, cluster_id: int, accelerator_model_id: int, start: datetime, end: datetime, limit: int) -> list[int]:
    """Up to `limit` free, rentable devices of one model in one cluster for [start, end).

    Packs the booking onto as few nodes as possible (nodes with the most free cards first), so a
    multi-node job spans few servers and leaves whole nodes free for the next buyer. One cluster
    is small (hundreds of devices), so the per-device probe is cheap here.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _FREE_DEVICES_SQL,
            {"cluster_id": cluster_id, "model_id": accelerator_model_id, "window": period_range(start, end), "limit": limit},
        )
        return [row[0] for row in cursor.fetchall()]


def maintenance_overlaps(*, device_ids: list[int], start: datetime, end: datetime) -> bool:
    """True if a (not cancelled) maintenance window covers any of these devices' nodes in [start, end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (
                SELECT 1 FROM inventory_device d
                JOIN inventory_node n ON n.id = d.node_id
                JOIN inventory_maintenancewindow mw ON mw.cluster_id = n.cluster_id AND (mw.node_id IS NULL OR mw.node_id = n.id)
                WHERE d.id = ANY(%(ids)s) AND mw.cancelled_at IS NULL AND mw.period && %(window)s
            )
            """,
            {"ids": list(device_ids), "window": period_range(start, end)},
        )
        return cursor.fetchone()[0]
