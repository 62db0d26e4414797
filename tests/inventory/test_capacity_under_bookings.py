"""Capacity under bookings: a provider cannot take cards off the market (retire an offer, a node, a
cluster or a site, or plan maintenance over them) while a buyer's confirmed reservation still holds
them. The refusal says how many reservations are in the way and when the last one ends, in the API
(409, the one error shape, the reason under the field) and on the provider pages. Ending an offer's
rentable period stops new bookings and is always allowed: bookings already made keep their cards."""

import re
import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services
from inventory.allocations import device_allocations_create
from inventory.models import Device, MaintenanceWindow, Node, Offer, Site
from marketplace.models import Reservation
from marketplace.services import reservation_cancel, reservation_create
from tests.factories import NodeFactory, member
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture
def soon():
    return timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)


@pytest.fixture
def buyer(db):
    return member(kind="buyer")


def book(offer, buyer, *, start, hours=24, cards=2) -> Reservation:
    reservation, _ = reservation_create(
        organization=buyer.memberships.get().organization, created_by=buyer, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=hours),
    )
    return reservation


def local(moment) -> str:
    return timezone.localtime(moment, SHANGHAI).strftime("%Y-%m-%d %H:%M CST")


def refused(response, field):
    body = response.json()["error"]
    assert response.status_code == 409, body
    assert body["code"] == "capacity_booked"
    assert body["fields"][field] == [body["message"]]
    return body["message"]


# --------------------------------------------------------------------------------------------- API


def test_withdrawing_an_offer_with_confirmed_bookings_is_refused_with_how_many_and_until_when(provider, buyer, soon):
    # Given two confirmed reservations on the offer's cards, the later one ending at soon + 30 h
    first = book(provider.offer, buyer, start=soon, hours=6)
    last = book(provider.offer, buyer, start=soon + timedelta(hours=6), hours=24)
    # When the provider withdraws the offer through the API (times shown in the provider's zone)
    provider.user.time_zone = "Asia/Shanghai"
    provider.user.save()
    response = provider.api().post(f"/api/offers/{provider.offer.pk}/retire/")
    # Then it is refused: 409, naming the count and the last end in the provider's zone
    message = refused(response, "is_active")
    assert message.startswith(f"2 confirmed reservations use this offer's cards until {local(last.end)};")
    assert "ending its rentable period" in message
    # And nothing changed
    assert Offer.objects.get(pk=provider.offer.pk).is_active
    assert {first.status, last.status} == {Reservation.Status.REQUESTED}


def test_an_offer_is_withdrawn_once_its_bookings_are_cancelled(provider, buyer, soon):
    reservation = book(provider.offer, buyer, start=soon)
    assert provider.api().post(f"/api/offers/{provider.offer.pk}/retire/").status_code == 409
    reservation_cancel(reservation=reservation, actor=buyer)
    response = provider.api().post(f"/api/offers/{provider.offer.pk}/retire/")
    assert response.status_code == 200 and response.json()["is_active"] is False


def test_a_booking_that_is_over_does_not_hold_the_capacity(provider):
    # Given a reservation whose period ended an hour ago (its allocation is still active history)
    device = Device.objects.filter(node=provider.node).first()
    past = timezone.now() - timedelta(hours=5)
    device_allocations_create(device_ids=[device.pk], start=past, end=past + timedelta(hours=4), reservation_id=424242)
    # When the provider retires the node, then it is retired
    response = provider.api().post(f"/api/nodes/{provider.node.pk}/retire/")
    assert response.status_code == 200 and response.json()["status"] == "retired"


def test_retiring_a_node_with_a_running_booking_is_refused(provider, buyer, soon):
    # Given a reservation on the node that started an hour ago and is active now
    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    device = Device.objects.filter(node=provider.node).first()
    device_allocations_create(device_ids=[device.pk], start=start, end=start + timedelta(hours=5), reservation_id=777)
    # When the provider retires the node (the retire action, or a status change to retired)
    retire = provider.api().post(f"/api/nodes/{provider.node.pk}/retire/")
    patch = provider.api().patch(f"/api/nodes/{provider.node.pk}/", {"status": "retired"}, format="json")
    # Then both are refused with the count, and the node stays online with no audit row
    assert refused(retire, "status").startswith("1 confirmed reservation uses this node's cards until ")
    assert refused(patch, "status") == refused(retire, "status")
    node = Node.objects.get(pk=provider.node.pk)
    assert node.status == Node.Status.ONLINE
    assert not node.status_changes.filter(to_status=Node.Status.RETIRED).exists()


def test_a_node_without_bookings_retires_while_its_neighbour_is_booked(provider, buyer, soon):
    # Given a second node in the cluster, and a booking of 4 cards that the fullest-node-first
    # packing places on one node only
    spare = NodeFactory(cluster=provider.cluster, hostname="alpha-node-2", card_count=4)
    reservation = book(provider.offer, buyer, start=soon, cards=4)
    booked_node = Device.objects.get(pk=reservation_device(reservation)).node
    free_node = spare if booked_node.pk == provider.node.pk else provider.node
    # When the provider retires the free node, then it is retired; the booked one is refused
    assert provider.api().post(f"/api/nodes/{free_node.pk}/retire/").status_code == 200
    assert provider.api().post(f"/api/nodes/{booked_node.pk}/retire/").status_code == 409


def reservation_device(reservation) -> int:
    from inventory.allocations import device_allocations_for_reservation

    return device_allocations_for_reservation(reservation_id=reservation.pk).first().device_id


def test_retiring_a_cluster_with_bookings_is_refused_and_retires_nothing(provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    response = provider.api().post(f"/api/clusters/{provider.cluster.pk}/retire/")
    assert refused(response, "status").startswith("1 confirmed reservation uses this cluster's cards until ")
    assert Node.objects.get(pk=provider.node.pk).status == Node.Status.ONLINE
    assert Offer.objects.get(pk=provider.offer.pk).is_active


def test_retiring_a_site_with_bookings_is_refused_by_the_action_and_by_a_lifecycle_change(provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    retire = provider.api().post(f"/api/sites/{provider.site.pk}/retire/")
    patch = provider.api().patch(f"/api/sites/{provider.site.pk}/", {"lifecycle": "retired"}, format="json")
    assert refused(retire, "lifecycle").startswith("1 confirmed reservation uses this site's cards until ")
    assert refused(patch, "lifecycle").startswith("1 confirmed reservation uses this site's cards")
    site = Site.objects.get(pk=provider.site.pk)
    assert site.lifecycle == Site.Lifecycle.ONLINE
    assert not site.lifecycle_changes.exists()


def test_another_providers_bookings_do_not_block_retiring_my_site(provider, other_provider, buyer, soon):
    book(other_provider.offer, buyer, start=soon)
    assert provider.api().post(f"/api/sites/{provider.site.pk}/retire/").status_code == 200


def test_maintenance_over_booked_cards_is_refused_with_how_many(provider, buyer, soon):
    reservation = book(provider.offer, buyer, start=soon, hours=10)
    response = provider.api().post(
        "/api/maintenance-windows/",
        {"cluster": provider.cluster.pk, "start": (soon + timedelta(hours=2)).isoformat(), "end": (soon + timedelta(hours=4)).isoformat()},
        format="json",
    )
    message = refused(response, "start")
    assert message.startswith("1 confirmed reservation uses this cluster's cards during that window")
    # the time is in the provider's own zone, named
    viewer_zone = zoneinfo.ZoneInfo(provider.user.time_zone)
    assert timezone.localtime(reservation.end, viewer_zone).strftime("%Y-%m-%d %H:%M") in message
    assert not MaintenanceWindow.objects.exists()
    # A window after the booking ends is planned
    after = provider.api().post(
        "/api/maintenance-windows/",
        {"cluster": provider.cluster.pk, "start": reservation.end.isoformat(), "end": (reservation.end + timedelta(hours=2)).isoformat()},
        format="json",
    )
    assert after.status_code == 201


def test_ending_the_rentable_period_stops_new_bookings_but_keeps_the_bookings_made(provider, buyer, soon):
    # Given a confirmed booking tomorrow
    reservation = book(provider.offer, buyer, start=soon, hours=4)
    # When the provider ends the offer's rentable period now (to stop new bookings before withdrawing it)
    response = provider.api().patch(
        f"/api/offers/{provider.offer.pk}/", {"rentable_until": timezone.now().isoformat()}, format="json"
    )
    # Then it is allowed, and the booking still becomes active at its start on the same cards
    assert response.status_code == 200, response.json()
    hand_over(reservation, at=soon + timedelta(minutes=1))
    assert reservation.status == Reservation.Status.ACTIVE


def test_model_cluster_and_card_count_cannot_change_under_a_booking(provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    node = provider.api().patch(f"/api/nodes/{provider.node.pk}/", {"card_count": 2}, format="json")
    offer = provider.api().patch(f"/api/offers/{provider.offer.pk}/", {"accelerator_model": "nvidia-a100-sxm4-80gb"}, format="json")
    assert node.status_code == 400 and "card_count" in node.json()["error"]["fields"]
    assert offer.status_code == 400 and "accelerator_model" in offer.json()["error"]["fields"]


def test_the_service_refuses_so_every_caller_is_covered(provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    with pytest.raises(services.InventoryConflict):
        services.cluster_retire(cluster=provider.cluster)


# ------------------------------------------------------------------------------------------- pages


def messages_on(page: str) -> list[str]:
    return [re.sub(r"\s+", " ", m).strip() for m in re.findall(r'<li class="message[^"]*">([^<]*)</li>', page)]


@pytest.fixture
def signed_in(client, provider):
    client.force_login(provider.user)
    return client


def test_the_withdraw_button_answers_with_the_reason_on_the_cluster_page(signed_in, provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    response = signed_in.post(f"/provider/offers/{provider.offer.pk}/retire/", follow=True)
    assert response.redirect_chain[-1][0] == f"/provider/clusters/{provider.cluster.pk}/"
    shown = messages_on(response.content.decode())
    assert any(m.startswith("1 confirmed reservation uses this offer&#x27;s cards until ") for m in shown), shown
    assert Offer.objects.get(pk=provider.offer.pk).is_active


def test_the_node_retire_button_answers_with_the_reason(signed_in, provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    response = signed_in.post(f"/provider/nodes/{provider.node.pk}/retire/", follow=True)
    shown = messages_on(response.content.decode())
    assert any("confirmed reservation uses this node" in m for m in shown), shown
    assert Node.objects.get(pk=provider.node.pk).status == Node.Status.ONLINE


def test_the_site_retire_button_and_the_site_form_answer_with_the_reason(signed_in, provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    response = signed_in.post(f"/provider/sites/{provider.site.pk}/retire/", follow=True)
    assert any("confirmed reservation uses this site" in m for m in messages_on(response.content.decode()))
    form = signed_in.post(f"/provider/sites/{provider.site.pk}/edit/", {
        "name": provider.site.name, "country": "CN", "lifecycle": "retired"})
    assert form.status_code == 200
    error = re.search(r'<p class="field-error" data-field="lifecycle">([^<]*)</p>', form.content.decode())
    assert error and error.group(1).startswith("1 confirmed reservation uses this site&#x27;s cards until ")
    assert Site.objects.get(pk=provider.site.pk).lifecycle == Site.Lifecycle.ONLINE


def test_the_maintenance_form_answers_with_the_reason_next_to_the_start(signed_in, provider, buyer, soon):
    book(provider.offer, buyer, start=soon)
    fmt = "%Y-%m-%dT%H:%M"
    zone = zoneinfo.ZoneInfo(provider.user.time_zone)
    response = signed_in.post(f"/provider/clusters/{provider.cluster.pk}/maintenance/", {
        "start": timezone.localtime(soon + timedelta(hours=1), zone).strftime(fmt),
        "end": timezone.localtime(soon + timedelta(hours=2), zone).strftime(fmt)})
    assert response.status_code == 409
    error = re.search(r'<p class="field-error" data-field="start">([^<]*)</p>', response.content.decode())
    assert error and "1 confirmed reservation uses this cluster&#x27;s cards during that window" in error.group(1)
