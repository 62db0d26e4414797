"""The window rules, written once (marketplace.windows): the SQL and the Python form of an offer's terms
agree, and a window on its own is checked the same way by the forms and the booking service."""

from datetime import timedelta

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from inventory.models import Offer
from marketplace.windows import MAX_WINDOW, offer_terms_breach, offer_terms_q, window_errors
from tests.factories import OfferFactory


@pytest.mark.django_db
def test_the_sql_and_the_python_form_of_the_offer_terms_agree(catalog):
    # given offers with every kind of term: duration bounds, closed, open-ended and exclusive rentable periods
    t0 = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    hour = timedelta(hours=1)
    terms = [
        (1, 720, None),
        (4, 8, None),
        (1, 720, DateTimeTZRange(t0, t0 + 10 * hour, "[)")),
        (1, 720, DateTimeTZRange(t0 + 2 * hour, None, "[)")),
        (1, 720, DateTimeTZRange(None, t0 + 5 * hour, "[)")),
        (1, 720, DateTimeTZRange(t0, t0 + 10 * hour, "(]")),
        (2, 6, DateTimeTZRange(t0 + hour, t0 + 7 * hour, "[)")),
    ]
    offers = [OfferFactory(min_duration_hours=low, max_duration_hours=high, rentable_period=period) for low, high, period in terms]
    windows = [(t0 + a * hour, t0 + b * hour) for a in range(0, 9) for b in range(a + 1, 12)]
    windows.append((t0 + timedelta(minutes=30), t0 + timedelta(hours=4, minutes=30)))

    # when each window is asked of both forms of the rule
    admitted_somewhere = refused_somewhere = 0
    for start, end in windows:
        in_sql = set(Offer.objects.filter(offer_terms_q(start=start, end=end)).values_list("pk", flat=True))
        in_python = {
            offer.pk for offer in offers
            if not offer_terms_breach(min_duration_hours=offer.min_duration_hours, max_duration_hours=offer.max_duration_hours,
                                      rentable_period=offer.rentable_period, start=start, end=end)
        }
        # then they admit exactly the same offers
        assert in_sql == in_python, (start - t0, end - t0)
        admitted_somewhere += len(in_sql)
        refused_somewhere += len(offers) - len(in_sql)
    # and the grid exercised both answers
    assert admitted_somewhere and refused_somewhere


def test_an_extension_only_needs_the_added_time_to_be_rentable_and_never_checks_the_minimum():
    t0 = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    period = DateTimeTZRange(t0 + timedelta(hours=4), t0 + timedelta(hours=10), "[)")
    # given a booking from t0 (before the rentable period began: it was booked under other terms), extended to t0+8h
    breach = offer_terms_breach(min_duration_hours=24, max_duration_hours=48, rentable_period=period,
                                start=t0, end=t0 + timedelta(hours=8), rentable_from=t0 + timedelta(hours=6), check_minimum=False)
    assert not breach
    # but the same window as a new booking breaks both terms
    assert offer_terms_breach(min_duration_hours=24, max_duration_hours=48, rentable_period=period,
                              start=t0, end=t0 + timedelta(hours=8)) == type(breach)(duration=True, rentable_period=True)


def test_a_window_on_its_own_is_refused_with_the_field_and_the_reason():
    now = timezone.now()
    later = now + timedelta(days=1)
    assert window_errors(start=later, end=later + timedelta(hours=4), now=now) == {}
    assert window_errors(start=later, end=later, now=now) == {"end": ["The end must be after the start."]}
    assert window_errors(start=later, end=later + MAX_WINDOW + timedelta(hours=1), now=now)["end"] == [
        "The window may span at most 366 days."]
    assert window_errors(start=now - timedelta(hours=1), end=later, now=now) == {"start": ["The start is in the past."]}
    assert "Too far ahead" in window_errors(start=now + timedelta(days=4000), end=now + timedelta(days=4001), now=now)["start"][0]
