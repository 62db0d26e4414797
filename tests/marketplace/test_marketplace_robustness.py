"""Bad input to the market API and pages gets a clear 4xx (or a field error) and changes nothing.

Each case here was a 500 (or a wrong answer) found by fuzzing the API (schemathesis) or the pages.
"""

from datetime import timedelta

import pytest

from inventory.models import DeviceAllocation
from marketplace.models import Reservation

pytestmark = pytest.mark.django_db

FAR = "9999-12-31T20:00:00Z"


def booking(offer, start, hours=4, cards=2):
    return {"offer": offer.pk, "card_count": cards, "start": start.isoformat(),
            "end": (start + timedelta(hours=hours)).isoformat()}


def error_of(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


def test_an_idempotency_key_with_a_nul_byte_is_a_400_and_books_nothing(buyer_client, small_offer, soon):
    # given a booking whose Idempotency-Key carries a NUL byte (PostgreSQL cannot store it)
    # when it is posted
    response = buyer_client.post("/api/reservations/", booking(small_offer, soon), format="json",
                                 HTTP_IDEMPOTENCY_KEY="key-\x00-1")
    # then the header is named as the problem and no card is booked
    assert "idempotency_key" in error_of(response, 400)["fields"]
    assert not Reservation.objects.exists() and not DeviceAllocation.objects.exists()


def test_a_quote_whose_end_would_overflow_the_calendar_is_a_400(buyer_client, small_offer):
    # given a quote starting at the end of time with a long duration (start + duration overflowed: 500)
    body = {"cards": 1, "start": "9999-12-31T23:00:00Z", "duration_hours": 8784, "currency": "CNY"}
    # when / then the start is refused as too far ahead
    assert "start" in error_of(buyer_client.post("/api/quotes/", body, format="json"), 400)["fields"]


def test_the_quote_page_refuses_a_start_at_the_end_of_time_next_to_the_field(client, small_offer):
    response = client.get("/market/quote/", {"cards": 1, "start": "9999-12-31T20:00", "duration_hours": 8784, "currency": "CNY"})
    assert response.status_code == 400
    assert "10 years" in response.context["form"].errors["start"][0]


def test_a_booking_at_the_end_of_time_is_a_400_and_books_nothing(buyer_client, small_offer):
    # given a booking in year 9999 (the reservation pages could not have shown it in UTC+8)
    body = {"offer": small_offer.pk, "card_count": 1, "start": FAR, "end": "9999-12-31T23:00:00Z"}
    # when / then
    assert "start" in error_of(buyer_client.post("/api/reservations/", body, format="json"), 400)["fields"]
    assert not Reservation.objects.exists()


def test_search_with_a_window_at_the_end_of_time_is_a_400_in_the_api_and_on_the_page(buyer_client, client, small_offer):
    window = {"start": FAR, "end": "9999-12-31T21:00:00Z"}
    assert "start" in error_of(buyer_client.get("/api/market/offers/", window), 400)["fields"]
    assert client.get("/market/", {"start": "9999-12-31T20:00", "end": "9999-12-31T21:00"}).status_code == 400


def test_a_quote_without_currency_uses_the_documented_default(buyer_client, small_offer, soon):
    # given a quote request that leaves out the currency (the schema says it defaults to CNY)
    body = {"cards": 8, "start": soon.isoformat(), "duration_hours": 4}
    # when it is posted
    response = buyer_client.post("/api/quotes/", body, format="json")
    # then it is priced in CNY instead of refused
    assert response.status_code == 200, response.content
    assert response.json()["currency"] == "CNY" and len(response.json()["placements"]) == 1


def test_a_budget_larger_than_any_database_integer_is_a_400(buyer_client, small_offer, soon):
    body = {"cards": 8, "start": soon.isoformat(), "duration_hours": 4, "max_total_price_minor": 10**30}
    assert "max_total_price_minor" in error_of(buyer_client.post("/api/quotes/", body, format="json"), 400)["fields"]


@pytest.mark.parametrize(
    "query",
    [{"page": "abc"}, {"page": "99999999999999999999"}, {"page": "0"}, {"start": "notadate", "end": "notadate"},
     {"min_free_cards": "99999999999999999999"}, {"hub": "99999999999999999999"}, {"vendor": "\x00"},
     {"max_price_per_card_hour": "1e400", "currency": "CNY"}, {"page_size": "abc"}],
)
def test_garbage_in_the_search_page_query_string_is_a_400_never_a_500(client, small_offer, query):
    assert client.get("/market/", query).status_code == 400


@pytest.mark.parametrize(
    "query",
    [{"start": "notadate"}, {"cards": "99999999999999999999", "start": "2030-01-01T00:00", "duration_hours": "1"},
     {"total_ecu": "NaN", "cards": "", "start": "2030-01-01T00:00", "duration_hours": "1"},
     {"countries": "\x00\x00", "cards": "1", "start": "2030-01-01T00:00", "duration_hours": "1"},
     {"hubs": "abc", "cards": "1", "start": "2030-01-01T00:00", "duration_hours": "1"}],
)
def test_garbage_in_the_quote_page_query_string_is_a_400_never_a_500(client, small_offer, query):
    assert client.get("/market/quote/", query).status_code == 400


@pytest.mark.parametrize("query", [{"start": "notadate", "end": "x"}, {"cards": "abc"}, {"start": FAR, "end": FAR}])
def test_garbage_in_the_offer_page_query_string_still_shows_the_offer(client, small_offer, query):
    assert client.get(f"/market/offers/{small_offer.pk}/", query).status_code == 200


@pytest.mark.parametrize(
    "change",
    [{"card_count": "99999999999999999999"}, {"start": "9999-12-31T20:00", "end": "9999-12-31T23:00"},
     {"start": "notadate"}, {"idempotency_key": "k\x00"}],
)
def test_garbage_in_the_booking_form_is_a_field_error_and_books_nothing(client, buyer, small_offer, soon, change):
    client.force_login(buyer)
    form = {"card_count": 1, "start": soon.strftime("%Y-%m-%dT%H:%M"),
            "end": (soon + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M"), "idempotency_key": "page-1", **change}
    response = client.post(f"/market/offers/{small_offer.pk}/", form)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert not Reservation.objects.exists()


def test_garbage_page_numbers_on_my_reservations_are_never_a_500(client, buyer):
    client.force_login(buyer)
    for page in ("abc", "99999999999999999999", "-1", "\x00"):
        assert client.get("/market/reservations/", {"page": page}).status_code == 200
