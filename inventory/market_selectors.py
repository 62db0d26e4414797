"""Reads of the device calendar that the marketplace needs, as set-based SQL.

Availability design (targets: 100,000 devices, 500,000 allocations, search p95 <= 50 ms; see
bench/README.md for the measurements behind each choice):

* Free cards are counted per offer, i.e. per (cluster, accelerator model), never per device:
  free = rentable cards - distinct devices of rentable nodes with an active allocation overlapping
  the window. Both terms are aggregates; no Device row is read.
* Rentable cards come from the nodes (12,500 rows at national scale, not 100,000 devices):
  Node.card_count of nodes online, unflagged and not blacked out by a maintenance window that
  overlaps the window. A node's devices are created with it, one per card, and its card count is
  fixed at listing, so card_count is the number of its Device rows.
* Busy devices come from the allocations themselves: every DeviceAllocation carries a copy of its
  device's node, cluster and model (written by inventory.allocations), and the GiST index
  allocation_offer_period on (cluster, model, period) WHERE is_active, INCLUDE (device, node,
  purpose) answers "which active allocations of this offer overlap the window" with one index-only
  range scan per offer - no per-device probe (the naive NOT EXISTS anti-join over all devices is
  the bench baseline). The exclusion constraint allows one device several allocations inside a
  window (back to back, or an extension), so devices are counted DISTINCT.
* Allocations on nodes that are not rentable (offline, flagged, blacked out) are left out with a
  hash anti-join against the few such nodes; their cards are reported under their own reason.
* The cost grows with the number of allocations overlapping the window of the asked offers, so
  callers ask only for the offers they show (a page) unless a filter or sort needs them all.

Maintenance windows normally materialize as allocations (inventory.allocations); a window that is
not (yet) materialized still blacks out its cluster or node here, so the answer never promises
cards that are in maintenance.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from inventory.allocations import period_range

_CAPACITY_SQL = """
WITH offers AS MATERIALIZED (
    SELECT id, cluster_id, accelerator_model_id FROM inventory_offer WHERE id = ANY(%(offer_ids)s)
),
blackouts AS MATERIALIZED (
    -- maintenance windows overlapping the window: a handful of rows
    SELECT cluster_id, node_id FROM inventory_maintenancewindow
    WHERE cancelled_at IS NULL AND period && %(window)s
),
nodes AS MATERIALIZED (
    -- each node of these offers once, with the one reason (if any) its cards cannot be rented
    SELECT n.id, o.id AS offer_id, n.card_count,
           CASE WHEN n.status <> 'online' THEN 'not_online'
                WHEN n.mismatch_reason <> '' THEN 'flagged'
                WHEN EXISTS (SELECT 1 FROM blackouts b
                             WHERE b.cluster_id = n.cluster_id AND (b.node_id IS NULL OR b.node_id = n.id))
                    THEN 'maintenance'
                ELSE 'rentable' END AS state
    FROM offers o
    JOIN inventory_node n ON n.cluster_id = o.cluster_id AND n.accelerator_model_id = o.accelerator_model_id
),
cards AS (
    SELECT offer_id,
           sum(card_count) AS total,
           coalesce(sum(card_count) FILTER (WHERE state = 'not_online'), 0) AS not_online,
           coalesce(sum(card_count) FILTER (WHERE state = 'flagged'), 0) AS flagged,
           coalesce(sum(card_count) FILTER (WHERE state = 'maintenance'), 0) AS blacked_out,
           coalesce(sum(card_count) FILTER (WHERE state = 'rentable'), 0) AS rentable
    FROM nodes
    GROUP BY offer_id
),
busy AS (
    -- distinct devices of rentable nodes with an active allocation overlapping the window: one
    -- index-only scan of allocation_offer_period per offer. A device with both a booking and a
    -- maintenance blackout in the window counts as in maintenance.
    SELECT o.id AS offer_id,
           count(DISTINCT a.device_id) AS busy,
           count(DISTINCT a.device_id) FILTER (WHERE a.purpose = 'maintenance') AS in_maintenance
    FROM offers o
    JOIN inventory_deviceallocation a
      ON a.cluster_id = o.cluster_id AND a.accelerator_model_id = o.accelerator_model_id
     AND a.is_active AND a.period && %(window)s
    WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = a.node_id AND n.state <> 'rentable')
    GROUP BY o.id
)
SELECT c.offer_id,
       c.total,
       c.not_online,
       c.flagged,
       c.blacked_out + coalesce(b.in_maintenance, 0),
       coalesce(b.busy - b.in_maintenance, 0),
       c.rentable - coalesce(b.busy, 0)
FROM cards c
LEFT JOIN busy b ON b.offer_id = c.offer_id
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
WITH busy AS MATERIALIZED (
    -- the offer's allocations overlapping the window: one range scan of allocation_offer_period
    SELECT DISTINCT a.device_id, a.node_id
    FROM inventory_deviceallocation a
    WHERE a.cluster_id = %(cluster_id)s AND a.accelerator_model_id = %(model_id)s
      AND a.is_active AND a.period && %(window)s
),
nodes AS (
    -- rentable nodes of the offer with their free cards (a node's devices are its card_count cards)
    SELECT n.id, n.card_count - coalesce(b.busy, 0) AS free_on_node
    FROM inventory_node n
    JOIN inventory_cluster c ON c.id = n.cluster_id
    JOIN inventory_site s ON s.id = c.site_id
    LEFT JOIN (SELECT node_id, count(*) AS busy FROM busy GROUP BY node_id) b ON b.node_id = n.id
    WHERE n.cluster_id = %(cluster_id)s AND n.accelerator_model_id = %(model_id)s
      AND n.status = 'online' AND n.mismatch_reason = '' AND s.lifecycle = 'online'
      AND NOT EXISTS (
          SELECT 1 FROM inventory_maintenancewindow mw
          WHERE mw.cluster_id = n.cluster_id AND (mw.node_id IS NULL OR mw.node_id = n.id)
            AND mw.cancelled_at IS NULL AND mw.period && %(window)s
      )
),
picked AS (
    -- the fullest nodes first, just enough of them to hold `limit` cards
    SELECT id, free_on_node FROM (
        SELECT id, free_on_node,
               sum(free_on_node) OVER (ORDER BY free_on_node DESC, id ROWS UNBOUNDED PRECEDING) - free_on_node AS before
        FROM nodes WHERE free_on_node > 0
    ) ranked
    WHERE before < %(limit)s
)
SELECT d.id
FROM picked
JOIN inventory_device d ON d.node_id = picked.id
WHERE NOT EXISTS (SELECT 1 FROM busy WHERE busy.device_id = d.id)
ORDER BY picked.free_on_node DESC, d.node_id, d.index
LIMIT %(limit)s
"""


def free_device_ids_for_booking(*, cluster_id: int, accelerator_model_id: int, start: datetime, end: datetime, limit: int) -> list[int]:
    """Up to `limit` free, rentable devices of one model in one cluster for [start, end).

    Packs the booking onto as few nodes as possible (nodes with the most free cards first), so a
    multi-node job spans few servers and leaves whole nodes free for the next buyer. Works at node
    level: the busy devices come from one scan of the offer's allocations (allocation_offer_period),
    free cards per node from card_count minus those, and only the devices of the nodes picked are read.
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
