"""Failover (marketplace.failover): a node's cards are lost -> each reservation on it moves to equivalent
free cards (same cluster, then same hub, then a model the buyer accepted), or ends with the unused time
unbilled; downtime and the node's reliability are recorded; a redelivery moves nothing twice."""

from datetime import timedelta

import pytest

from inventory.models import DeviceAllocation, Node, ReliabilityEvent
from inventory.services import node_set_status
from marketplace.failover import reservation_downtime_close, reservations_failover, reservations_failover_sweep
from marketplace.models import Reservation, ReservationDowntime, ReservationSegment
from marketplace.pricing import card_seconds_price_minor
from marketplace.services import reservation_create
from marketplace.tasks import reservations_on_capacity_lost_task
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, SiteFactory, accelerator, member, province
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

PRICE = 2500
LATE = timedelta(minutes=7)  # the health check passed 7 minutes after the start
SILENT_FROM = timedelta(hours=2)  # the node's last heartbeat, after the start


def booked(offer, user, start, *, hours=4, cards=8, alternatives=()):
    reservation, _ = reservation_create(
        organization=user.memberships.get().organization, created_by=user, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=hours),
    )
    if alternatives:
        reservation.accepted_alternatives.set(alternatives)
    return reservation


def activated(offer, user, soon, **kwargs):
    reservation = hand_over(booked(offer, user, soon, **kwargs), at=soon + LATE)
    assert reservation.status == Reservation.Status.ACTIVE
    return reservation


def held_nodes(reservation, at) -> dict[int, int]:
    counts: dict[int, int] = {}
    for node_id in DeviceAllocation.objects.filter(
        reservation_id=reservation.pk, is_active=True, period__endswith__gt=at
    ).values_list("node_id", flat=True):
        counts[node_id] = counts.get(node_id, 0) + 1
    return counts


def fail(node, *, last_heartbeat, cause="host_fault"):
    """The node's agent was last heard from at `last_heartbeat`; then the node is declared unhealthy."""
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=last_heartbeat)
    node.refresh_from_db()
    return node_set_status(node=node, status=Node.Status.UNHEALTHY, reason="test failure", cause=cause)


def node_holding(reservation):
    return Node.objects.get(pk=DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True).values("node_id")[:1])


def test_an_active_reservation_moves_to_free_cards_of_the_same_cluster(small_offer, buyer, soon):
    # given an active 8-card reservation on one node of a 2-node cluster (the other node is free)
    reservation = activated(small_offer, buyer, soon)
    failed = node_holding(reservation)
    other = Node.objects.filter(cluster=small_offer.cluster).exclude(pk=failed.pk).get()
    at = soon + SILENT_FROM
    # when the node fails (last heard from at `at`) and failover runs a while later
    fail(failed, last_heartbeat=at)
    outcome = reservations_failover(node_ids=[failed.pk], now=at + timedelta(minutes=4))
    # then the reservation is migrating on the other node's cards, from `at`
    assert outcome["moved"] == 1
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.MIGRATING
    assert reservation.offer_id == small_offer.pk and reservation.price_per_card_hour_minor == PRICE
    assert held_nodes(reservation, at) == {other.pk: 8}
    old_rows = DeviceAllocation.objects.filter(reservation_id=reservation.pk, node=failed)
    assert {row.period.upper for row in old_rows} == {at}
    assert {row.release_reason for row in old_rows} == {"rehomed"}
    # the failed node's segment ended at the last heartbeat: the silent time is not billed
    segment = ReservationSegment.objects.get(reservation=reservation, node=failed)
    assert segment.ended_at == at
    assert not ReservationSegment.objects.filter(reservation=reservation, ended_at__isnull=True).exists()
    served = int((at - (soon + LATE)).total_seconds())
    assert reservation.billed_price_minor == card_seconds_price_minor([(PRICE, 8 * served)])
    # the downtime is open from the last heartbeat, with the node change's cause
    downtime = ReservationDowntime.objects.get(reservation=reservation)
    assert (downtime.node_id, downtime.started_at, downtime.ended_at, downtime.cause) == (failed.pk, at, None, "host_fault")
    # the buyer's timeline says where it went; the node has one failover event
    event = reservation.status_changes.get(reason_code="failover_moved")
    assert event.reason_params["tier"] == "same_cluster" and "8 cards were moved" in event.reason_text
    assert ReliabilityEvent.objects.filter(node=failed, kind="failover", cause="host_fault", at=at).count() == 1
    # when the new cards report healthy (provisioning calls this), the downtime closes there
    healthy = at + timedelta(minutes=9)
    assert reservation_downtime_close(reservation=reservation, at=healthy) == 1
    downtime.refresh_from_db()
    assert downtime.ended_at == healthy and downtime.seconds == 9 * 60


def test_a_redelivered_task_moves_nothing_twice(small_offer, buyer, soon):
    # given a reservation failed over once through the task
    reservation = activated(small_offer, buyer, soon)
    failed = node_holding(reservation)
    at = soon + SILENT_FROM
    fail(failed, last_heartbeat=at)
    first = reservations_on_capacity_lost_task(node_ids=[failed.pk])
    after_first = (
        list(DeviceAllocation.objects.filter(reservation_id=reservation.pk).order_by("pk").values_list("pk", "is_active", "period")),
        reservation.status_changes.count(), ReservationDowntime.objects.count(), ReliabilityEvent.objects.count(),
    )
    # when the same task is delivered again (and once more through the service)
    second = reservations_on_capacity_lost_task(node_ids=[failed.pk])
    reservations_failover(node_ids=[failed.pk])
    # then nothing moved, nothing was written twice
    assert first["moved"] == 1 and second["moved"] == 0 and second["events"] == 0
    assert after_first == (
        list(DeviceAllocation.objects.filter(reservation_id=reservation.pk).order_by("pk").values_list("pk", "is_active", "period")),
        reservation.status_changes.count(), ReservationDowntime.objects.count(), ReliabilityEvent.objects.count(),
    )


def test_a_full_cluster_moves_the_whole_reservation_to_another_offer_in_the_same_hub(catalog, buyer, soon):
    # given a one-node cluster whose 8 cards are all booked, and another provider's H100 offer in a
    # site of the same national hub, more expensive - plus a cheaper one in another hub
    home = OfferFactory(cluster=NodeFactory().cluster)
    elsewhere_site = SiteFactory(province=province("CN-BJ"))
    elsewhere = OfferFactory(cluster=NodeFactory(cluster=ClusterFactory(site=elsewhere_site)).cluster, price_per_card_hour_minor=100)
    same_hub_site = SiteFactory(province=province("CN-GZ"))
    target = OfferFactory(cluster=NodeFactory(cluster=ClusterFactory(site=same_hub_site)).cluster, price_per_card_hour_minor=9900)
    reservation = activated(home, buyer, soon)
    failed = node_holding(reservation)
    at = soon + SILENT_FROM
    # when the node fails
    fail(failed, last_heartbeat=at)
    assert reservations_failover(node_ids=[failed.pk], now=at + timedelta(minutes=1))["moved"] == 1
    # then it runs on the same-hub offer's cards, at the price locked at booking
    reservation.refresh_from_db()
    assert reservation.offer_id == target.pk and reservation.cluster_id == target.cluster_id
    assert reservation.price_per_card_hour_minor == PRICE
    assert set(held_nodes(reservation, at)) == set(Node.objects.filter(cluster=target.cluster).values_list("pk", flat=True))
    assert reservation.status_changes.get(reason_code="failover_moved").reason_params["tier"] == "same_hub"
    assert not DeviceAllocation.objects.filter(cluster=elsewhere.cluster, is_active=True).exists()


def test_an_accepted_other_model_takes_the_reservation_and_an_unaccepted_one_does_not(catalog, buyer, soon):
    # given two full one-node H100 clusters, each with an A100 offer in the same cluster with free cards;
    # the first buyer accepted the A100, the second did not
    a100 = accelerator("nvidia-a100-sxm4-80gb")
    reservations = []
    for accepted in ([a100], []):
        cluster = ClusterFactory()
        home = OfferFactory(cluster=NodeFactory(cluster=cluster).cluster)
        NodeFactory(cluster=cluster, accelerator_model=a100)
        OfferFactory(cluster=cluster, accelerator_model=a100, price_per_card_hour_minor=1200)
        reservations.append(hand_over(booked(home, buyer, soon, alternatives=accepted), at=soon + LATE))
    at = soon + SILENT_FROM
    failed = [node_holding(reservation) for reservation in reservations]
    for node in failed:
        fail(node, last_heartbeat=at)
    # when failover runs for both nodes
    outcome = reservations_failover(node_ids=[node.pk for node in failed], now=at + timedelta(minutes=1))
    # then the one that accepted A100 runs on A100 cards (price locked), the other ended
    assert outcome["moved"] == 1 and outcome["ended"] == 1
    moved, ended = (Reservation.objects.get(pk=r.pk) for r in reservations)
    assert moved.status == Reservation.Status.MIGRATING and moved.accelerator_model_id == a100.pk
    assert moved.price_per_card_hour_minor == PRICE
    assert moved.status_changes.get(reason_code="failover_moved").reason_params["tier"] == "alternative"
    assert ended.status == Reservation.Status.COMPLETED


def test_a_multi_node_reservation_moves_only_the_failed_nodes_share(catalog, buyer, soon):
    # given a 3-node cluster and a 16-card reservation on two of its nodes
    cluster = ClusterFactory()
    nodes = [NodeFactory(cluster=cluster) for _ in range(3)]
    offer = OfferFactory(cluster=cluster)
    reservation = activated(offer, buyer, soon, cards=16)
    holding = held_nodes(reservation, soon + LATE)
    assert len(holding) == 2
    failed_id, kept_id = sorted(holding)
    spare = next(node for node in nodes if node.pk not in holding)
    kept_segment = ReservationSegment.objects.get(reservation=reservation, node_id=kept_id)
    at = soon + SILENT_FROM
    # when one of its nodes fails
    fail(Node.objects.get(pk=failed_id), last_heartbeat=at)
    reservations_failover(node_ids=[failed_id], now=at + timedelta(minutes=1))
    # then its 8 cards moved to the spare node; the other node's cards and segment were not touched
    reservation.refresh_from_db()
    assert held_nodes(reservation, at) == {kept_id: 8, spare.pk: 8}
    kept_segment.refresh_from_db()
    assert kept_segment.ended_at is None and kept_segment.started_at == soon + LATE
    assert ReservationSegment.objects.get(reservation=reservation, node_id=failed_id).ended_at == at
    assert reservation.status == Reservation.Status.MIGRATING


def test_nothing_free_ends_the_reservation_says_why_and_bills_only_until_the_last_heartbeat(catalog, buyer, soon, client):
    # given an active reservation on a one-node cluster with nothing equivalent anywhere
    offer = OfferFactory(cluster=NodeFactory().cluster)
    reservation = activated(offer, buyer, soon, hours=6)
    booked_end = reservation.end
    failed = node_holding(reservation)
    at = soon + SILENT_FROM
    # when the node fails and failover runs 20 minutes later
    fail(failed, last_heartbeat=at, cause="network")
    assert reservations_failover(node_ids=[failed.pk], now=at + timedelta(minutes=20))["ended"] == 1
    # then it is completed at the last heartbeat; its cards are free from then on
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.COMPLETED
    assert reservation.active_to == at and reservation.end == at and reservation.booked_end == booked_end
    assert not DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True, period__endswith__gt=at).exists()
    assert set(DeviceAllocation.objects.filter(reservation_id=reservation.pk).values_list("release_reason", flat=True)) == {"node_failed"}
    # the price comes from the segments and stops at the last heartbeat (not the 20 minutes after, nor the booked end)
    served = int((at - (soon + LATE)).total_seconds())
    assert reservation.total_price_minor == card_seconds_price_minor([(PRICE, 8 * served)])
    assert reservation.total_price_minor < reservation.estimated_price_minor
    # the buyer is told why, on the reservation's page
    event = reservation.status_changes.get(reason_code="failover_no_capacity")
    assert "no equivalent cards were free" in event.reason_text
    client.force_login(buyer)
    page = client.get(f"/market/reservations/{reservation.pk}/").content.decode()
    assert "no equivalent cards were free" in page
    # the time lost (last heartbeat to the booked end) is recorded for SLA credits
    downtime = ReservationDowntime.objects.get(reservation=reservation)
    assert (downtime.started_at, downtime.ended_at, downtime.cause) == (at, booked_end, "network")
    # and a second run changes nothing
    assert reservations_failover(node_ids=[failed.pk], now=at + timedelta(minutes=30)) == {
        "moved": 0, "ended": 0, "noted": 0, "skipped": 0,
    }


def test_upcoming_reservations_are_rehomed_before_their_start(small_offer, buyer, soon):
    # given two upcoming reservations (at different times) on the same node of a 2-node cluster
    first = booked(small_offer, buyer, soon)
    second = booked(small_offer, buyer, soon + timedelta(hours=10))
    failed = node_holding(first)
    assert set(held_nodes(second, second.start)) == {failed.pk}
    # when that node fails now, before their starts
    node_set_status(node=failed, status=Node.Status.UNHEALTHY, reason="test", cause="host_fault")
    outcome = reservations_failover(node_ids=[failed.pk])
    # then both moved to the other node from their starts, still requested; nothing is open as downtime
    assert outcome["moved"] == 2
    for reservation in (first, second):
        reservation.refresh_from_db()
        assert reservation.status == Reservation.Status.REQUESTED
        assert failed.pk not in held_nodes(reservation, reservation.start)
        assert sum(held_nodes(reservation, reservation.start).values()) == 8
    assert not ReservationDowntime.objects.exists()


def test_an_upcoming_reservation_without_room_gets_one_note(catalog, buyer, soon):
    # given an upcoming reservation on a one-node cluster, nothing else anywhere
    offer = OfferFactory(cluster=NodeFactory().cluster)
    reservation = booked(offer, buyer, soon)
    failed = node_holding(reservation)
    node_set_status(node=failed, status=Node.Status.UNHEALTHY, reason="test", cause="host_fault")
    # when failover runs twice
    assert reservations_failover(node_ids=[failed.pk])["noted"] == 1
    assert reservations_failover(node_ids=[failed.pk])["noted"] == 0
    # then it keeps its cards and its status, with one note; no downtime (it was never served)
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.REQUESTED
    assert reservation.status_changes.filter(reason_code="failover_not_moved").count() == 1
    assert not ReservationDowntime.objects.exists()
    assert not ReliabilityEvent.objects.filter(kind="failover").exists()


def test_maintenance_moves_the_work_and_does_not_count_against_the_provider(small_offer, buyer, soon):
    reservation = activated(small_offer, buyer, soon)
    failed = node_holding(reservation)
    at = soon + SILENT_FROM
    Node.objects.filter(pk=failed.pk).update(last_heartbeat_at=at)
    node_set_status(node=failed, status=Node.Status.MAINTENANCE, reason="disk swap")
    reservations_failover(node_ids=[failed.pk], now=at + timedelta(minutes=1))
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.MIGRATING
    assert ReservationDowntime.objects.get(reservation=reservation).cause == "maintenance"
    failed.refresh_from_db()
    assert failed.reliability_score == 100
    assert ReliabilityEvent.objects.get(node=failed).cause == "maintenance"


def test_a_member_of_another_organization_never_sees_the_failover(small_offer, buyer, soon, client):
    reservation = activated(small_offer, buyer, soon)
    failed = node_holding(reservation)
    fail(failed, last_heartbeat=soon + SILENT_FROM)
    reservations_failover(node_ids=[failed.pk], now=soon + SILENT_FROM + timedelta(minutes=1))
    client.force_login(member(kind="buyer"))
    assert client.get(f"/market/reservations/{reservation.pk}/").status_code == 404


@pytest.mark.parametrize("second_silent_from", [timedelta(hours=3), timedelta(hours=1)])
def test_a_second_failure_during_a_move_moves_it_again_and_keeps_one_outage(catalog, buyer, soon, second_silent_from):
    # given a 3-node cluster and an active reservation on its first node
    cluster = ClusterFactory()
    nodes = [NodeFactory(cluster=cluster) for _ in range(3)]
    offer = OfferFactory(cluster=cluster)
    reservation = activated(offer, buyer, soon)
    first = node_holding(reservation)
    t1 = soon + SILENT_FROM
    fail(first, last_heartbeat=t1)
    reservations_failover(node_ids=[first.pk], now=t1 + timedelta(minutes=1))
    second_id = next(iter(held_nodes(reservation, t1)))
    third = next(node for node in nodes if node.pk not in (first.pk, second_id))
    first_rows = list(DeviceAllocation.objects.filter(node=first).order_by("pk").values_list("pk", "period", "is_active"))
    # when the node it moved to fails too (last heard from after the move, or - a node already going
    # quiet when it was picked - before it)
    t2 = soon + second_silent_from
    fail(Node.objects.get(pk=second_id), last_heartbeat=t2)
    assert reservations_failover(node_ids=[second_id], now=max(t1, t2) + timedelta(minutes=2))["moved"] == 1
    # then it runs on the third node from the later of the two instants, still migrating; the first
    # node's history is untouched, and the outage is one record open since the first failure
    reservation.refresh_from_db()
    moved_at = max(t1, t2)
    assert held_nodes(reservation, moved_at) == {third.pk: 8}
    assert reservation.status == Reservation.Status.MIGRATING
    assert list(DeviceAllocation.objects.filter(node=first).order_by("pk").values_list("pk", "period", "is_active")) == first_rows
    assert list(ReservationDowntime.objects.filter(reservation=reservation).values_list("node_id", "started_at", "ended_at")) == [
        (first.pk, t1, None)
    ]


def test_a_move_whose_new_cards_miss_their_boot_deadline_ends_the_reservation_unbilled_since_the_failure(small_offer, buyer, soon):
    from marketplace.models import NodeAssignment
    from marketplace.provisioning.services import reservation_provision, reservations_sweep

    # given an active reservation whose node failed at `at`, moved to the other node's cards
    reservation = activated(small_offer, buyer, soon)
    booked_end = reservation.end
    failed = node_holding(reservation)
    at = soon + SILENT_FROM
    fail(failed, last_heartbeat=at)
    reservations_failover(node_ids=[failed.pk], now=at + timedelta(minutes=4))
    reservation_provision(reservation.pk, now=at + timedelta(minutes=4))
    new = NodeAssignment.objects.get(reservation=reservation, desired="run")
    # when the new node never reports it running and the sweeper passes its deadline
    late = new.deadline + timedelta(seconds=1)
    reservations_sweep(now=late)
    # then the move is given up: completed at that instant with the reason, nothing billed after `at`
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.COMPLETED and reservation.end == late and reservation.active_to == late
    last = reservation.status_changes.last()
    assert last.reason_code == "move_boot_failed" and "not running by the deadline" in last.reason_params["reason"]
    served = int((at - (soon + LATE)).total_seconds())
    assert reservation.billed_price_minor == card_seconds_price_minor([(PRICE, 8 * served)])
    downtime = ReservationDowntime.objects.get(reservation=reservation)
    assert (downtime.started_at, downtime.ended_at) == (at, booked_end)
    assert not NodeAssignment.objects.filter(reservation=reservation, desired="run").exists()
    assert not DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True, period__endswith__gt=late).exists()


def test_the_sweep_fails_over_what_the_lost_capacity_lost_task_never_reached(small_offer, buyer, soon):
    # given an active reservation whose node turned unhealthy, and the capacity_lost task never ran
    # (here: the test's transaction never commits, so the on-commit enqueue never happens - as with the
    # broker down at that moment, or a worker killed before it ran the task)
    reservation = activated(small_offer, buyer, soon)
    failed = node_holding(reservation)
    at = soon + SILENT_FROM
    fail(failed, last_heartbeat=at)
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.ACTIVE  # nothing moved it yet: its segment stays open
    # when the beat sweep runs
    first = reservations_failover_sweep(now=at + timedelta(minutes=2))
    second = reservations_failover_sweep(now=at + timedelta(minutes=3))
    # then it is moved from the last heartbeat, once
    assert first["nodes"] == 1 and first["moved"] == 1
    assert second == {"nodes": 0}
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.MIGRATING
    assert ReservationSegment.objects.get(reservation=reservation, node=failed).ended_at == at
