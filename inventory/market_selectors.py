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
  allocation_offer_busy on (cluster, model, period) WHERE is_active, INCLUDE (device, node)
  answers "which active allocations of this offer overlap the window" with one index-only range
  scan per offer - no per-device probe (the naive NOT EXISTS anti-join over all devices is the
  bench baseline). The exclusion constraint allows one device several allocations inside a
  window (back to back, or an extension), so devices are counted DISTINCT. Which of them are in
  maintenance comes from the small partial index allocation_offer_maintenance, so the big index
  does not carry `purpose` (20% smaller, a faster scan).
* Allocations on nodes that are not rentable (offline, flagged, blacked out) are left out by testing
  the node against the offer's few such nodes (an array built in the same pass over the nodes);
  their cards are reported under their own reason. Blacked-out nodes are found from the handful of
  windows overlapping the window, not by probing every node.
* The cost grows with the number of allocations overlapping the window of the asked offers, so
  callers ask only for the offers they show (a page) unless a filter or sort needs them all, and
  a minimum of free cards skips the calendar of offers that do not have that many rentable cards.

Maintenance windows normally materialize as allocations (inventory.allocations); a window that is
not (yet) materialized still blacks out its cluster or node here, so the answer never promises
cards that are in maintenance.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet

from inventory.allocations import period_range
from inventory.models import Node, Offer, Site

_CAPACITY_SQL = """
WITH offers AS MATERIALIZED (
    SELECT id, cluster_id, accelerator_model_id FROM inventory_offer WHERE id = ANY(%(offer_ids)s)
),
blackouts AS MATERIALIZED (
    -- maintenance windows overlapping the window: a handful of rows
    SELECT cluster_id, node_id FROM inventory_maintenancewindow
    WHERE cancelled_at IS NULL AND period && %(window)s
),
blacked_out_nodes AS MATERIALIZED (
    -- online, unflagged nodes of these offers under one of those windows (found from the windows)
    SELECT o.id AS offer_id, n.id, n.card_count
    FROM blackouts b
    JOIN inventory_node n ON n.cluster_id = b.cluster_id AND (b.node_id IS NULL OR b.node_id = n.id)
    JOIN offers o ON o.cluster_id = n.cluster_id AND o.accelerator_model_id = n.accelerator_model_id
    WHERE n.status = 'online' AND n.mismatch_reason = ''
    GROUP BY o.id, n.id, n.card_count
),
node_cards AS (
    -- one pass over the offers' nodes, grouped by offer key: cards by reason, and the ids of the
    -- nodes that are not online or flagged (a few per offer)
    SELECT o.id AS offer_id, t.total, t.not_online, t.flagged, t.unrentable_nodes
    FROM offers o
    JOIN (
        SELECT n.cluster_id, n.accelerator_model_id,
               sum(n.card_count) AS total,
               coalesce(sum(n.card_count) FILTER (WHERE n.status <> 'online'), 0) AS not_online,
               coalesce(sum(n.card_count) FILTER (WHERE n.status = 'online' AND n.mismatch_reason <> ''), 0) AS flagged,
               coalesce(array_agg(n.id) FILTER (WHERE n.status <> 'online' OR n.mismatch_reason <> ''), '{}') AS unrentable_nodes
        FROM inventory_node n
        WHERE (n.cluster_id, n.accelerator_model_id) IN (SELECT cluster_id, accelerator_model_id FROM offers)
          AND n.status <> 'retired'  -- a retired node's cards are gone, not "not online"
        GROUP BY n.cluster_id, n.accelerator_model_id
    ) t ON t.cluster_id = o.cluster_id AND t.accelerator_model_id = o.accelerator_model_id
),
cards AS MATERIALIZED (
    SELECT nc.offer_id, nc.total, nc.not_online, nc.flagged,
           coalesce(bo.cards, 0) AS blacked_out,
           nc.total - nc.not_online - nc.flagged - coalesce(bo.cards, 0) AS rentable,
           nc.unrentable_nodes || coalesce(bo.ids, '{}') AS unrentable_nodes
    FROM node_cards nc
    LEFT JOIN (SELECT offer_id, sum(card_count) AS cards, array_agg(id) AS ids FROM blacked_out_nodes GROUP BY offer_id) bo
      ON bo.offer_id = nc.offer_id
    -- an offer with fewer rentable cards than asked cannot have that many free: it is left out
    WHERE nc.total - nc.not_online - nc.flagged - coalesce(bo.cards, 0) >= %(min_free_cards)s
),
counted AS MATERIALIZED (
    -- the offers whose calendar must be read: those with rentable cards at all
    SELECT c.offer_id, o.cluster_id, o.accelerator_model_id, c.unrentable_nodes
    FROM cards c JOIN offers o ON o.id = c.offer_id
    WHERE c.rentable > 0
),
busy AS MATERIALIZED (
    -- distinct devices of rentable nodes with an active allocation overlapping the window: one
    -- index-only scan of allocation_offer_busy per offer; allocations on the offer's few unrentable
    -- nodes are dropped by an array test. The row estimates of `cards` are far too low (1 for 120),
    -- so nothing may depend on them: MATERIALIZED computes this once whatever join the planner
    -- picks below (a re-executed or nested-loop variant of this step once took 700 ms).
    SELECT c.offer_id, count(DISTINCT a.device_id) AS busy
    FROM counted c
    JOIN inventory_deviceallocation a
      ON a.cluster_id = c.cluster_id AND a.accelerator_model_id = c.accelerator_model_id
     AND a.is_active AND a.period && %(window)s
    WHERE a.node_id <> ALL (c.unrentable_nodes)
    GROUP BY c.offer_id
),
in_maintenance AS MATERIALIZED (
    -- of those, the devices with a maintenance allocation (they count as in maintenance even if
    -- also booked): a scan of the small allocation_offer_maintenance index
    SELECT c.offer_id, count(DISTINCT a.device_id) AS in_maintenance
    FROM counted c
    JOIN inventory_deviceallocation a
      ON a.cluster_id = c.cluster_id AND a.accelerator_model_id = c.accelerator_model_id
     AND a.is_active AND a.purpose = 'maintenance' AND a.period && %(window)s
    WHERE a.node_id <> ALL (c.unrentable_nodes)
    GROUP BY c.offer_id
)
SELECT c.offer_id,
       c.total,
       c.not_online,
       c.flagged,
       c.blacked_out + coalesce(m.in_maintenance, 0),
       coalesce(b.busy, 0) - coalesce(m.in_maintenance, 0),
       c.rentable - coalesce(b.busy, 0)
FROM cards c
LEFT JOIN busy b ON b.offer_id = c.offer_id
LEFT JOIN in_maintenance m ON m.offer_id = c.offer_id
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


def offer_capacity(
    *, offer_ids: list[int], start: datetime, end: datetime, min_free_cards: int = 0
) -> dict[int, OfferCapacity]:
    """Per offer id: its cards in [start, end), split by why they are not free. Offers with no live (unretired) node are absent.

    With min_free_cards, offers whose rentable cards are fewer than that (so that cannot have that
    many free) are absent too, and their calendar is not read at all.
    """
    if not offer_ids:
        return {}
    params = {"offer_ids": list(offer_ids), "window": period_range(start, end), "min_free_cards": max(min_free_cards, 0)}
    with connection.cursor() as cursor:
        cursor.execute(_CAPACITY_SQL, params)
        return {row[0]: OfferCapacity(*row[1:]) for row in cursor.fetchall()}


_FREE_DEVICES_SQL = """
WITH busy AS MATERIALIZED (
    -- the offer's allocations overlapping the window: one range scan of allocation_offer_busy
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
SELECT d.id, d.node_id
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
    level: the busy devices come from one scan of the offer's allocations (allocation_offer_busy),
    free cards per node from card_count minus those, and only the devices of the nodes picked are read.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _FREE_DEVICES_SQL,
            {"cluster_id": cluster_id, "model_id": accelerator_model_id, "window": period_range(start, end), "limit": limit},
        )
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class OfferBookingTerms:
    """What a booking copies from its offer, read under the offer's row lock."""

    offer_id: int
    cluster_id: int
    accelerator_model_id: int
    is_active: bool
    site_lifecycle: str
    price_per_card_hour_minor: int
    currency: str
    ecu_per_card: Decimal | None
    # the offer's terms for a window (marketplace.windows checks them): read under the same lock, so
    # the booking checks the committed row nobody can change before it commits, in no extra statement
    min_duration_hours: int
    max_duration_hours: int
    rentable_period: object  # a tstzrange (psycopg2 DateTimeTZRange) or None


def offer_lock_for_booking(*, offer_id: int) -> OfferBookingTerms | None:
    """Lock an offer for booking (FOR NO KEY UPDATE: bookings of one offer queue here) and read its
    price, duration bounds and rentable period, its site's lifecycle and its model's ECU rating in
    the same statement. None if it is gone.

    Call inside the booking's transaction. Device picking must run in a later statement, so that it
    sees every booking committed by whoever held the lock before.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT o.id, o.cluster_id, o.accelerator_model_id, o.is_active, s.lifecycle,
                   o.price_per_card_hour_minor, o.currency, m.ecu_per_card,
                   o.min_duration_hours, o.max_duration_hours, o.rentable_period
            FROM inventory_offer o
            JOIN inventory_cluster c ON c.id = o.cluster_id
            JOIN inventory_site s ON s.id = c.site_id
            JOIN inventory_acceleratormodel m ON m.id = o.accelerator_model_id
            WHERE o.id = %s
            FOR NO KEY UPDATE OF o
            """,
            [offer_id],
        )
        row = cursor.fetchone()
    return OfferBookingTerms(*row) if row else None


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


def offers_active() -> QuerySet[Offer]:
    """Offers not withdrawn, in any site (a planned site's offer can be looked at, not booked)."""
    return Offer.objects.filter(is_active=True)


def offers_listed() -> QuerySet[Offer]:
    """Offers on the market: active, in an online site, with cards of their model listed in their
    cluster (rentable or not; retired nodes are gone). The marketplace filters and prices them.

    offer_create refuses an offer without cards, but its nodes can be retired later: such an offer
    would show as "0 / 0", so it is left out here rather than trusted to have been withdrawn.
    """
    has_cards = Node.objects.filter(
        cluster_id=OuterRef("cluster_id"), accelerator_model_id=OuterRef("accelerator_model_id")
    ).exclude(status=Node.Status.RETIRED)
    return offers_active().filter(Exists(has_cards), cluster__site__lifecycle=Site.Lifecycle.ONLINE)


def offer_get(*, offer_id: int, active_only: bool = False) -> Offer | None:
    """One offer by id (any organization's: offers are public), or None."""
    offers = offers_active() if active_only else Offer.objects.all()
    return offers.filter(pk=offer_id).first()
