"""The REST API and the pages: bad input gets a clear 4xx and changes nothing; organizations see only their own."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from inventory.models import DeviceAllocation
from marketplace.models import Reservation
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member

pytestmark = pytest.mark.django_db

SEARCH = "/api/market/offers/"


def iso(value):
    return value.isoformat()


def booking(offer, start, hours=4, cards=8):
    return {"offer": offer.pk, "card_count": cards, "start": iso(start), "end": iso(start + timedelta(hours=hours))}


def test_search_filters_and_counts_free_cards_for_the_window(buyer_client, small_offer, soon):
    buyer_client.post("/api/reservations/", booking(small_offer, soon, cards=12), format="json")
    window = {"start": iso(soon + timedelta(hours=1)), "end": iso(soon + timedelta(hours=2))}
    body = buyer_client.get(SEARCH, {**window, "stack": "cuda", "min_memory_gb": 80, "province": "CN-GZ"}).json()
    assert body["count"] == 1
    offer = body["results"][0]
    assert offer["capacity"]["cards_free"] == 4 and offer["capacity"]["cards_booked"] == 12
    assert offer["price_per_ecu_hour_minor"] == 2528  # 2500 / 0.989 = 2527.8..., half up to a whole fen
    assert buyer_client.get(SEARCH, {**window, "min_free_cards": 5}).json()["count"] == 0
    assert buyer_client.get(SEARCH, {"stack": "cann"}).json()["count"] == 0
    assert buyer_client.get(SEARCH, {"max_price_per_card_hour": "24.99", "currency": "CNY"}).json()["count"] == 0
    assert buyer_client.get(SEARCH, {"max_price_per_ecu_hour": "25.28", "currency": "CNY"}).json()["count"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"colour": "blue"}, "colour"),
        ({"page_size": "100000"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}, "end"),
        ({"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"}, "start"),
        ({"start": "tomorrow-ish", "end": "2030-01-01T00:00:00Z"}, "start"),
        ({"start": "2030-01-01T00:00:00Z"}, "end"),
        ({"min_free_cards": "0"}, "min_free_cards"),
        ({"stack": "cobol"}, "stack"),
        ({"sort": "random"}, "sort"),
        ({"max_price_per_card_hour": "20"}, "currency"),
    ],
)
def test_bad_search_input_is_a_400_naming_the_field(buyer_client, small_offer, params, field):
    response = buyer_client.get(SEARCH, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    if "colour" in params:
        assert "colour" in error["message"]


def test_booking_through_the_api_is_idempotent_and_more_cards_than_are_free_is_409(buyer_client, small_offer, soon):
    first = buyer_client.post("/api/reservations/", booking(small_offer, soon), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201, first.json()
    again = buyer_client.post("/api/reservations/", booking(small_offer, soon), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    reused = buyer_client.post("/api/reservations/", booking(small_offer, soon, cards=2), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    full = buyer_client.post("/api/reservations/", booking(small_offer, soon, cards=9), format="json")
    assert full.status_code == 409
    assert full.json()["error"]["code"] == "insufficient_capacity" and full.json()["error"]["cards_free"] == 8
    assert Reservation.objects.count() == 1 and DeviceAllocation.objects.filter(is_active=True).count() == 8
    assert first.json()["total_price_minor"] == 2500 * 8 * 4
    assert [step["to_status"] for step in first.json()["timeline"]] == ["requested"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"card_count": 0}, "card_count"),
        ({"card_count": -3}, "card_count"),
        ({"card_count": 100_000}, "card_count"),
        ({"end": "2020-01-01T00:00:00Z"}, "end"),
        ({"start": "not a time"}, "start"),
        ({"offer": 987654}, "offer"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_booking_input_is_a_400_and_books_nothing(buyer_client, small_offer, soon, change, field):
    response = buyer_client.post("/api/reservations/", {**booking(small_offer, soon), **change}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not Reservation.objects.exists() and not DeviceAllocation.objects.exists()


def test_a_start_in_the_past_is_refused(buyer_client, small_offer):
    past = timezone.now() - timedelta(hours=3)
    response = buyer_client.post("/api/reservations/", booking(small_offer, past), format="json")
    assert response.status_code == 400 and "start" in response.json()["error"]["fields"]


def test_quote_api_explains_and_rejects_bad_input(buyer_client, small_offer, soon):
    body = {"cards": 8, "start": iso(soon), "duration_hours": 24, "stacks": ["cuda"], "currency": "CNY"}
    quote = buyer_client.post("/api/quotes/", body, format="json").json()
    assert len(quote["placements"]) == 1 and quote["placements"][0]["total_price_minor"] == 2500 * 8 * 24
    over = buyer_client.post("/api/quotes/", {**body, "max_total_price_minor": 100}, format="json").json()
    assert over["excluded"][0]["reasons"][0]["code"] == "over_budget"
    for bad, field in [({"cards": 0}, "cards"), ({"cards": None, "total_ecu": None}, "cards"),
                       ({"duration_hours": None, "end": iso(soon - timedelta(hours=1))}, "end"), ({"wat": 1}, "wat")]:
        response = buyer_client.post("/api/quotes/", {k: v for k, v in {**body, **bad}.items() if v is not None}, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"], (bad, response.json())


def test_members_see_only_their_organizations_reservations(buyer_client, small_offer, soon):
    mine = buyer_client.post("/api/reservations/", booking(small_offer, soon), format="json").json()["id"]
    stranger = APIClient()
    stranger.force_login(member(kind="buyer"))
    assert stranger.get("/api/reservations/").json()["count"] == 0
    assert stranger.get(f"/api/reservations/{mine}/").status_code == 404
    assert stranger.post(f"/api/reservations/{mine}/cancel/").status_code == 404
    colleague = APIClient()
    colleague.force_login(member(organization=Reservation.objects.get().buyer, role="member"))
    assert colleague.get("/api/reservations/").json()["count"] == 1
    provider = APIClient()
    provider.force_login(member(kind="provider"))
    assert provider.post("/api/reservations/", booking(small_offer, soon + timedelta(days=1)), format="json").status_code == 403


def test_cancel_release_and_extend_through_the_api(buyer_client, small_offer, soon):
    rid = buyer_client.post("/api/reservations/", booking(small_offer, soon), format="json").json()["id"]
    early = buyer_client.post(f"/api/reservations/{rid}/release/")
    assert early.status_code == 409 and early.json()["error"]["code"] == "reservation_state"  # not started yet
    extended = buyer_client.post(f"/api/reservations/{rid}/extend/", {"end": iso(soon + timedelta(hours=6))}, format="json")
    assert extended.status_code == 200 and parse_datetime(extended.json()["end"]) == soon + timedelta(hours=6)
    assert buyer_client.post(f"/api/reservations/{rid}/extend/", {"end": "bad"}, format="json").status_code == 400
    cancelled = buyer_client.post(f"/api/reservations/{rid}/cancel/").json()
    assert cancelled["status"] == "cancelled" and cancelled["total_price_minor"] == 0


def test_the_schema_generates(buyer_client):
    response = buyer_client.get("/api/schema/")
    assert response.status_code == 200 and b"/api/market/offers/" in response.content and b"/api/quotes/" in response.content


def test_pages_search_quote_and_reservations(client, small_offer, soon, buyer):
    assert client.get("/market/", {"stack": "cuda"}).status_code == 200  # anonymous may browse
    assert client.get("/market/", {"colour": "blue"}).status_code == 400
    assert client.get("/market/", {"page_size": "5000"}).status_code == 400
    page = client.get("/market/quote/", {"cards": 8, "start": soon.strftime("%Y-%m-%dT%H:%M"), "duration_hours": 4, "currency": "CNY"})
    assert page.status_code == 200 and b"Placements" in page.content
    assert client.get(f"/market/offers/{small_offer.pk}/").status_code == 200
    client.force_login(buyer)
    form = {"card_count": 8, "start": soon.strftime("%Y-%m-%dT%H:%M"), "end": (soon + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M"),
            "idempotency_key": "page-1"}
    booked = client.post(f"/market/offers/{small_offer.pk}/", form)
    assert booked.status_code == 302
    assert client.post(f"/market/offers/{small_offer.pk}/", form).status_code == 302  # a double submit books once
    assert Reservation.objects.count() == 1
    detail = client.get(booked["Location"])
    assert b"Booked." in detail.content and b"Timeline" in detail.content
    conflict = client.post(f"/market/offers/{small_offer.pk}/", {**form, "card_count": 9, "idempotency_key": "page-2"})
    assert conflict.status_code == 409 and b"Only 8 of the 9 cards are free in that window" in conflict.content
    assert b"Reservation" in client.get("/market/reservations/").content


@pytest.fixture
def forty_card_offer(catalog):
    cluster = ClusterFactory()
    for i in range(5):
        NodeFactory(cluster=cluster, hostname=f"forty-{i}")
    return OfferFactory(cluster=cluster)


def test_asking_for_more_cards_than_are_free_answers_the_free_count_not_a_race(buyer_client, forty_card_offer, soon):
    # given 16 of the 40 cards booked for the window, so 24 are free
    assert buyer_client.post("/api/reservations/", booking(forty_card_offer, soon, cards=16), format="json").status_code == 201
    # when a buyer asks for 40 of them
    response = buyer_client.post("/api/reservations/", booking(forty_card_offer, soon, cards=40), format="json")
    # then a 409 in the one error shape says how many are free - it does not blame someone else's booking
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_capacity"
    assert error["message"].startswith("Only 24 of the 40 cards are free in that window")
    assert "someone else" not in error["message"]
    assert (error["cards_free"], error["cards_asked"]) == (24, 40)
    assert error["fields"] == {"card_count": [error["message"]]}
    assert Reservation.objects.count() == 1 and DeviceAllocation.objects.filter(is_active=True).count() == 16


def test_the_book_button_says_how_many_cards_are_free_next_to_the_card_count(client, buyer, forty_card_offer, soon):
    # given 16 of the 40 cards booked
    client.force_login(buyer)
    window = {"start": soon.strftime("%Y-%m-%dT%H:%M"), "end": (soon + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")}
    assert client.post(f"/market/offers/{forty_card_offer.pk}/", {**window, "card_count": 16, "idempotency_key": "a"}).status_code == 302
    # when the buyer asks the Book button for 40
    page = client.post(f"/market/offers/{forty_card_offer.pk}/", {**window, "card_count": 40, "idempotency_key": "b"})
    # then the page answers 409 with the API's message, on the card count field
    assert page.status_code == 409
    assert page.context["form"].errors["card_count"] == [
        "Only 24 of the 40 cards are free in that window - book 24 or fewer, pick another time or another offer."]
    assert b"Only 24 of the 40 cards are free in that window" in page.content
    assert Reservation.objects.count() == 1
