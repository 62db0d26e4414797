"""What a window [start, end) must satisfy to be searched, quoted or booked - each rule written once.

* window_errors: the window on its own (end after start, not in the past, inside the calendar,
  at most MAX_WINDOW long). Used by the search, quote and booking forms and by the booking service.
* The offer's terms for a window - its duration bounds and its rentable period - in two forms of
  the same rule: offer_terms_q (SQL, for the set-based search over every offer) and
  offer_terms_breach (Python, for one offer: booking, extension, and the quote's reasons).
  tests/marketplace/test_windows.py checks that the two agree.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from inventory.allocations import period_range
from inventory.services import CALENDAR_HORIZON_MESSAGE, beyond_calendar_horizon

# A start this far in the past still counts as "now" (the form took a moment to submit).
START_GRACE = timedelta(minutes=5)
# The longest window anyone may search, quote or book.
MAX_WINDOW = timedelta(days=366)


def window_errors(*, start: datetime, end: datetime, now: datetime | None = None) -> dict[str, list[str]]:
    """Field errors of the window [start, end) on its own; {} when it is fine."""
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    if end <= start:
        errors["end"] = [_("The end must be after the start.")]
    elif end - start > MAX_WINDOW:
        errors["end"] = [_("The window may span at most %(days)s days.") % {"days": MAX_WINDOW.days}]
    if start < now - START_GRACE:
        errors["start"] = [_("The start is in the past.")]
    elif beyond_calendar_horizon(start, now=now):
        errors["start"] = [CALENDAR_HORIZON_MESSAGE]
    return errors


def window_hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


@dataclass(frozen=True)
class TermsBreach:
    """Which of an offer's terms a window breaks (both False: none)."""

    duration: bool = False  # shorter than min_duration_hours or longer than max_duration_hours
    rentable_period: bool = False  # not inside the offer's rentable period

    def __bool__(self) -> bool:
        return self.duration or self.rentable_period


def offer_terms_breach(
    *,
    min_duration_hours: int,
    max_duration_hours: int,
    rentable_period,
    start: datetime,
    end: datetime,
    rentable_from: datetime | None = None,
    check_minimum: bool = True,
) -> TermsBreach:
    """The offer's terms for [start, end), for one offer in Python (offer_terms_q is the same rule in SQL).

    `rentable_from` (default: start) is where the rentable period must begin covering: an extension
    only needs the time it adds to be rentable; `check_minimum=False` skips the minimum duration
    (an extension never makes a booking too short).
    """
    hours = window_hours(start, end)
    too_long = hours > max_duration_hours
    too_short = check_minimum and hours < min_duration_hours
    return TermsBreach(
        duration=too_long or too_short,
        rentable_period=not _period_contains(rentable_period, start if rentable_from is None else rentable_from, end),
    )


def _period_contains(period, start: datetime, end: datetime) -> bool:
    """PostgreSQL's `period @> tstzrange(start, end, '[)')` (NULL period: no limit), in Python."""
    if period is None:
        return True
    if period.isempty:
        return False
    lower_ok = period.lower_inf or period.lower < start or (period.lower == start and period.lower_inc)
    # the window excludes `end`, so an upper bound equal to it is enough, inclusive or not
    upper_ok = period.upper_inf or end <= period.upper
    return lower_ok and upper_ok


def offer_terms_q(*, start: datetime, end: datetime) -> Q:
    """Offers whose terms admit [start, end), as a filter (offer_terms_breach is the same rule in Python)."""
    hours = window_hours(start, end)
    return Q(min_duration_hours__lte=hours, max_duration_hours__gte=hours) & (
        Q(rentable_period__isnull=True) | Q(rentable_period__contains=period_range(start, end))
    )
