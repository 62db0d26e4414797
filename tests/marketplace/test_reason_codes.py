"""Timelines: reasons are stored as codes with raw parameters and rendered for each reader - money as
"CNY 16.40", times in the reader's zone with the zone named - on the page and in the API alike."""

import importlib
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.timezones import format_local_time
from inventory.pricing import format_money
from marketplace.models import ReservationStatusChange
from marketplace.reasons import REASON_TEMPLATES, ReasonCode, render_reason
from marketplace.services import reservation_cancel, reservation_create, reservation_extend, reservation_set_status

pytestmark = pytest.mark.django_db

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def book(offer, user, start, hours=4, cards=8):
    reservation, _ = reservation_create(
        organization=user.memberships.get().organization, created_by=user, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=hours),
    )
    return reservation


def test_money_is_formatted_from_minor_units_with_the_currency_first():
    assert format_money(1640, "CNY") == "CNY 16.40"
    assert format_money(480000, "CNY") == "CNY 4,800.00"
    assert format_money(5, "USD") == "USD 0.05"
    assert format_money(None, "CNY") == "not rated"


def test_a_time_is_shown_in_the_given_zone_with_the_zone_named():
    instant = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)
    assert format_local_time(instant, tz=SHANGHAI) == "2026-12-10 09:00 CST"
    assert format_local_time(instant, tz=zoneinfo.ZoneInfo("UTC")) == "2026-12-10 01:00 UTC"
    with timezone.override(zoneinfo.ZoneInfo("Europe/Berlin")):
        assert format_local_time(instant, seconds=True) == "2026-12-10 02:00:00 CET"


def test_a_booking_stores_a_code_with_raw_parameters_and_renders_money_formatted(small_offer, buyer, soon):
    # given a booking of 8 cards at 25.00 CNY per card-hour
    reservation = book(small_offer, buyer, soon)
    # then its first event is a code with raw parameters, no sentence
    event = reservation.status_changes.get()
    assert event.reason_code == ReasonCode.BOOKED
    assert event.reason_params == {"cards": 8, "price": {"minor": 2500, "currency": "CNY"}}
    assert event.reason == ""
    # and the text shows the amount formatted, never "minor units"
    assert event.reason_text == "Booked 8 cards at CNY 25.00 per card-hour."


def test_an_extension_renders_both_times_in_the_viewers_zone_with_the_zone_named(small_offer, buyer, soon):
    # given a reservation extended by 20 hours
    reservation = book(small_offer, buyer, soon)
    old_end = reservation.end
    reservation_extend(reservation=reservation, end=old_end + timedelta(hours=20), actor=buyer)
    event = reservation.status_changes.last()
    assert event.reason_code == ReasonCode.EXTENDED
    assert event.reason_params == {"old_end": old_end.astimezone(UTC).isoformat(),
                                   "new_end": (old_end + timedelta(hours=20)).astimezone(UTC).isoformat()}
    # when a reader in Shanghai and a reader in UTC look at it, then each sees both times on one clock
    with timezone.override(SHANGHAI):
        shanghai_text = event.reason_text
    with timezone.override(zoneinfo.ZoneInfo("UTC")):
        utc_text = event.reason_text
    local = old_end.astimezone(SHANGHAI)
    assert shanghai_text == (f"Extended from {local:%Y-%m-%d %H:%M} CST to "
                             f"{local + timedelta(hours=20):%Y-%m-%d %H:%M} CST on the same cards.")
    assert utc_text.count(" UTC") == 2 and "+00:00" not in utc_text and "T" not in utc_text.split("from ")[1][:11]


def test_the_reservation_page_timeline_shows_formatted_money_and_zoned_times(small_offer, buyer, soon, client):
    # given a buyer in Shanghai (the default zone) with a booking that was extended
    reservation = book(small_offer, buyer, soon)
    reservation_extend(reservation=reservation, end=reservation.end + timedelta(hours=2), actor=buyer)
    client.force_login(buyer)
    # when they open the reservation
    body = client.get(f"/market/reservations/{reservation.pk}/").content.decode()
    timeline = body.split('data-testid="timeline"')[1].split("</ol>")[0]
    # then no raw minor units and no ISO times appear, and every time names its zone
    assert "minor units" not in timeline and "+00:00" not in timeline and "+08:00" not in timeline
    assert "CNY 25.00 per card-hour" in timeline
    assert timeline.count(" CST") >= 4  # two event times + the two ends of the extension


def test_the_api_gives_code_parameters_and_the_text_in_the_key_holders_zone(small_offer, buyer, soon):
    reservation = book(small_offer, buyer, soon)
    reservation_extend(reservation=reservation, end=reservation.end + timedelta(hours=2), actor=buyer)
    api = APIClient()
    api.force_login(buyer)
    timeline = api.get(f"/api/reservations/{reservation.pk}/").json()["timeline"]
    assert [event["reason_code"] for event in timeline] == ["booked", "extended"]
    assert timeline[0]["reason_params"] == {"cards": 8, "price": {"minor": 2500, "currency": "CNY"}}
    assert timeline[0]["reason"] == "Booked 8 cards at CNY 25.00 per card-hour."
    assert timeline[1]["reason"].count(" CST") == 2 and "+00:00" not in timeline[1]["reason"]


def test_an_operator_cancel_needs_a_note_and_records_it_with_the_operator(small_offer, buyer, soon):
    reservation = book(small_offer, buyer, soon)
    operator = buyer  # any user: the service records who acted; who may act is the admin's business
    with pytest.raises(ValidationError):
        reservation_cancel(reservation=reservation, actor=operator, reason="  ", by_operator=True)
    reservation_cancel(reservation=reservation, actor=operator, reason="Duplicate booking (ticket 42)", by_operator=True)
    event = reservation.status_changes.last()
    assert (event.reason_code, event.actor) == (ReasonCode.OPERATOR_CANCELLED, operator)
    assert event.reason_text.endswith("Note: Duplicate booking (ticket 42)")


def test_a_status_change_with_a_code_missing_from_the_map_is_refused_and_writes_nothing(small_offer, buyer, soon):
    reservation = book(small_offer, buyer, soon)
    with pytest.raises(ValueError, match="REASON_TEMPLATES"):
        reservation_set_status(reservation=reservation, status="cancelled", reason_code="cancelled_by_typo")
    reservation.refresh_from_db()
    assert reservation.status == "requested" and reservation.status_changes.count() == 1


def test_an_unknown_or_broken_code_falls_back_to_the_stored_text():
    assert render_reason("no_such_code", {}, "old words") == "old words"
    assert render_reason("", {}, "free text") == "free text"
    assert render_reason(ReasonCode.BOOKED, {"cards": 8}, "fallback") == "fallback"  # price missing


@pytest.mark.parametrize("code", sorted(REASON_TEMPLATES))
def test_every_template_is_translatable_text(code):
    # gettext_lazy proxies: the text is looked up in the reader's language when it is rendered
    assert type(REASON_TEMPLATES[code].text).__name__ == "__proxy__"


# --- the data migration -----------------------------------------------------------------------

migration = importlib.import_module("marketplace.migrations.0002_reservation_event_reason_code")


@pytest.mark.parametrize(("old_text", "code", "params"), [
    ("Booked 8 cards at 1640 CNY minor units per card-hour.", "booked",
     {"cards": 8, "price": {"minor": 1640, "currency": "CNY"}}),
    ("Extended from 2026-12-10T01:00:00+00:00 to 2026-12-11T09:00:00+08:00 on the same cards.", "extended",
     {"old_end": "2026-12-10T01:00:00+00:00", "new_end": "2026-12-11T01:00:00+00:00"}),
    ("Released early by the buyer (booked until 2026-12-11T09:00:00+08:00).", "released_early",
     {"booked_until": "2026-12-11T01:00:00+00:00"}),
    ("Released early by the buyer (booked until 2026-12-11T09:00:00+08:00). It never became active.",
     "released_before_active", {"booked_until": "2026-12-11T01:00:00+00:00"}),
    ("3 of the 8 cards sit on a node that is not online or is flagged, or on a site that is not online; billing "
     "starts only after the node passes its health check, so nothing is billed.", "unhealthy_at_activation",
     {"count": 3, "cards": 8}),
    ("The start time was reached.", "start_reached", {}),
    ("Cancelled by the buyer before the start; nothing to pay.", "cancelled_by_buyer", {}),
])
def test_the_migration_recognises_the_old_sentences_and_normalises_their_times_to_utc(old_text, code, params):
    assert migration.code_for(old_text) == (code, params)
    # and the rendered text says the same as the old sentence, minus minor units and mixed zones
    assert render_reason(code, params, old_text) != ""


def test_the_migration_leaves_other_words_as_free_text():
    assert migration.code_for("Plans changed (demo).") is None


@pytest.mark.django_db(transaction=True)
def test_migrating_existing_rows_gives_codes_and_keeps_the_old_text(small_offer, buyer, soon):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    # given events written before reason codes existed (the old sentences, codes emptied)
    reservation = book(small_offer, buyer, soon)
    ReservationStatusChange.objects.create(reservation=reservation, from_status="requested", to_status="cancelled",
                                           reason="Plans changed (demo).")
    ReservationStatusChange.objects.filter(reason_code=ReasonCode.BOOKED).update(
        reason_code="", reason_params={}, reason="Booked 8 cards at 2500 CNY minor units per card-hour.")
    # when the data migration runs over them
    executor = MigrationExecutor(connection)
    state = executor.loader.project_state(("marketplace", "0002_reservation_event_reason_code"))
    migration.forwards(state.apps, connection.schema_editor())
    # then the recognised sentence has its code and the old text stays as the fallback; the rest is untouched
    booked, note = reservation.status_changes.order_by("id")
    assert (booked.reason_code, booked.reason_params["price"]) == ("booked", {"minor": 2500, "currency": "CNY"})
    assert booked.reason == "Booked 8 cards at 2500 CNY minor units per card-hour."
    assert booked.reason_text == "Booked 8 cards at CNY 25.00 per card-hour."
    assert (note.reason_code, note.reason_text) == ("", "Plans changed (demo).")
