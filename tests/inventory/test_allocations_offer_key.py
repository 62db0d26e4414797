"""The device calendar's copies of node, cluster and model (the offer key) and the availability
counts built on them: they must always agree with a from-scratch recount, device by device."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from inventory.allocations import device_allocations_create, device_allocations_truncate, period_range
from inventory.market_selectors import OfferCapacity, free_device_ids_for_booking, offer_capacity
from inventory.models import DeviceAllocation, Node
from inventory.services import maintenance_window_cancel, maintenance_window_create
from marketplace.services import BookingConflict, reservation_cancel, reservation_create, reservation_extend
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member

pytestmark = pytest.mark.django_db

COPIES_DISAGREE_SQL = """
    SELECT count(*) FROM inventory_deviceallocation a
    JOIN inventory_device d ON d.id = a.device_id
    JOIN inventory_node n ON n.id = d.node_id
    WHERE a.node_id IS DISTINCT FROM n.id OR a.cluster_id IS DISTINCT FROM n.cluster_id
       OR a.accelerator_model_id IS DISTINCT FROM n.accelerator_model_id
"""

# Free cards of one offer counted the slow, obvious way: every device of a rentable node, not in a
# maintenance window, with no active allocation overlapping the window.
NAIVE_FREE_SQL = """
    SELECT count(*) FROM inventory_offer o
    JOIN inventory_node n ON n.cluster_id = o.cluster_id AND n.accelerator_model_id = o.accelerator_model_id
    JOIN inventory_device d ON d.node_id = n.id
    WHERE o.id = %(offer)s AND n.status = 'online' AND n.mismatch_reason = ''
      AND NOT EXISTS (SELECT 1 FROM inventory_maintenancewindow mw
                      WHERE mw.cluster_id = n.cluster_id AND (mw.node_id IS NULL OR mw.node_id = n.id)
                        AND mw.cancelled_at IS NULL AND mw.period && %(window)s)
      AND NOT EXISTS (SELECT 1 FROM inventory_deviceallocation a
                      WHERE a.device_id = d.id AND a.is_active AND a.period && %(window)s)
"""


def copies_disagree() -> int:
    with connection.cursor() as cursor:
        cursor.execute(COPIES_DISAGREE_SQL)
        return cursor.fetchone()[0]


def naive_free(offer, start, end) -> int:
    with connection.cursor() as cursor:
        cursor.execute(NAIVE_FREE_SQL, {"offer": offer.pk, "window": period_range(start, end)})
        return cursor.fetchone()[0]


def capacity(offer, start, end) -> OfferCapacity:
    return offer_capacity(offer_ids=[offer.pk], start=start, end=end)[offer.pk]


@pytest.fixture
def soon():
    return timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)


@pytest.fixture
def market(catalog):
    """Two offers of different models in one cluster: 3 nodes of 8 cards, and 1 node of 8; a buyer."""
    cluster = ClusterFactory()
    model = NodeFactory(cluster=cluster).accelerator_model
    NodeFactory(cluster=cluster, accelerator_model=model)
    NodeFactory(cluster=cluster, accelerator_model=model)
    other_model = type(model).objects.exclude(pk=model.pk).order_by("id").first()
    NodeFactory(cluster=cluster, accelerator_model=other_model)
    return {
        "offer": OfferFactory(cluster=cluster, accelerator_model=model),
        "other": OfferFactory(cluster=cluster, accelerator_model=other_model),
        "nodes": list(Node.objects.filter(cluster=cluster, accelerator_model=model).order_by("id")),
        "buyer": member(kind="buyer"),
        "cluster": cluster,
    }


def book(market, start, hours=4, cards=8, offer=None):
    buyer = market["buyer"]
    return reservation_create(organization=buyer.memberships.get().organization, created_by=buyer,
                              offer=offer or market["offer"], card_count=cards, start=start, end=start + timedelta(hours=hours))[0]


def test_every_calendar_row_carries_its_devices_node_cluster_and_model_through_every_write(market, soon):
    # given bookings of both offers, a maintenance window on one node, an extension, a cancellation
    reservation = book(market, soon, cards=12)
    book(market, soon, cards=3, offer=market["other"])
    reservation_extend(reservation=reservation, end=soon + timedelta(hours=6), actor=None)
    cancelled = book(market, soon + timedelta(days=2), cards=5)
    reservation_cancel(reservation=cancelled, actor=None)
    window = maintenance_window_create(cluster=market["cluster"], node=market["nodes"][2], start=soon + timedelta(days=3),
                                       end=soon + timedelta(days=4), reason="firmware")
    device_allocations_truncate(reservation_id=reservation.pk, end=soon + timedelta(hours=5), reason="released_early")
    maintenance_window_cancel(window=window)
    # then every row, active or released, names the node, cluster and model of its device
    assert DeviceAllocation.objects.count() == 12 + 12 + 3 + 5 + 8
    assert copies_disagree() == 0
    rows = DeviceAllocation.objects.filter(reservation_id=reservation.pk)
    assert {(a.cluster_id, a.accelerator_model_id) for a in rows} == {(market["cluster"].pk, market["offer"].accelerator_model_id)}


def test_an_allocation_of_an_unknown_device_is_refused_and_writes_nothing(market, soon):
    with pytest.raises(ValueError, match="Unknown devices"):
        device_allocations_create(device_ids=[10**9], start=soon, end=soon + timedelta(hours=1), reservation_id=1)
    assert not DeviceAllocation.objects.exists()


def test_free_cards_equal_a_device_by_device_recount_whatever_the_calendar_holds(market, soon):
    offer, nodes = market["offer"], market["nodes"]
    # given: a 4-card booking, a back-to-back booking of the same devices and an extension (several
    # rows of one device inside the window), a node flagged, a node in a maintenance window
    first = book(market, soon, hours=2, cards=4)
    reservation_extend(reservation=first, end=soon + timedelta(hours=2, minutes=30), actor=None)
    device_ids = sorted(DeviceAllocation.objects.filter(reservation_id=first.pk).values_list("device_id", flat=True))
    device_allocations_create(device_ids=device_ids, start=soon + timedelta(hours=2, minutes=30), end=soon + timedelta(hours=3),
                              reservation_id=first.pk + 1000)
    book(market, soon + timedelta(hours=5), hours=2, cards=2, offer=market["other"])
    Node.objects.filter(pk=nodes[1].pk).update(mismatch_reason="agent reports 7 cards")
    maintenance_window_create(cluster=market["cluster"], node=nodes[2], start=soon + timedelta(hours=1),
                              end=soon + timedelta(hours=8), reason="cooling")
    # then, for windows that catch none, some or all of it, both offers agree with the recount
    for hours_from, hours_to in [(0, 1), (0, 4), (2, 3), (1, 2), (3, 6), (9, 12), (-5, 20)]:
        start, end = soon + timedelta(hours=hours_from), soon + timedelta(hours=hours_to)
        for each in (offer, market["other"]):
            counted = capacity(each, start, end)
            assert counted.cards_free == naive_free(each, start, end), (each, hours_from, hours_to)
            assert counted.cards_total == (counted.cards_not_online + counted.cards_flagged + counted.cards_in_maintenance
                                           + counted.cards_booked + counted.cards_free)
    whole = capacity(offer, soon, soon + timedelta(hours=4))
    assert (whole.cards_total, whole.cards_flagged, whole.cards_in_maintenance, whole.cards_booked, whole.cards_free) == (24, 8, 8, 4, 4)


def test_device_picking_fills_the_fullest_nodes_and_never_offers_a_busy_card(market, soon):
    book(market, soon, cards=3)  # node A keeps 5 free cards; B and C have 8
    picked = free_device_ids_for_booking(cluster_id=market["cluster"].pk, accelerator_model_id=market["offer"].accelerator_model_id,
                                         start=soon, end=soon + timedelta(hours=1), limit=12)
    busy = set(DeviceAllocation.objects.filter(is_active=True).values_list("device_id", flat=True))
    assert len(picked) == 12 and not busy & set(picked)
    nodes = set(Node.objects.filter(devices__id__in=picked).values_list("id", flat=True))
    assert nodes == {market["nodes"][1].pk, market["nodes"][2].pk}  # the two whole free nodes, not the half-booked one


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_leave_the_counts_equal_to_a_recount(catalog):
    # given a 4-node offer (32 cards) and 12 buyers each wanting 4 cards for the same hours
    cluster = ClusterFactory()
    model = NodeFactory(cluster=cluster).accelerator_model
    for _ in range(3):
        NodeFactory(cluster=cluster, accelerator_model=model)
    offer = OfferFactory(cluster=cluster, accelerator_model=model)
    buyer = member(kind="buyer")
    organization = buyer.memberships.get().organization
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    outcomes: list[str] = []

    def attempt():
        try:
            reservation_create(organization=organization, created_by=None, offer=offer, card_count=4,
                               start=start, end=start + timedelta(hours=3))
            outcomes.append("booked")
        except BookingConflict:
            outcomes.append("conflict")
        finally:
            connections.close_all()

    # when they book at once
    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then exactly 8 bookings got cards, nothing was lost or doubled, and the counts match a recount
    assert outcomes.count("booked") == 8 and outcomes.count("conflict") == 4
    assert DeviceAllocation.objects.filter(is_active=True).count() == 32
    assert copies_disagree() == 0
    counted = capacity(offer, start, start + timedelta(hours=3))
    assert counted.cards_booked == 32 and counted.cards_free == 0 == naive_free(offer, start, start + timedelta(hours=3))
    later = capacity(offer, start + timedelta(hours=3), start + timedelta(hours=4))
    assert later.cards_free == 32 == naive_free(offer, start + timedelta(hours=3), start + timedelta(hours=4))
