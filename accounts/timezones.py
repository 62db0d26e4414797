"""Times as people read them: in the viewer's zone, always with the zone named.

Times are UTC in the database. A signed-in user sees them in their own zone (accounts.middleware
activates it; API keys do the same); an anonymous visitor sees UTC, labelled "UTC". A bare
"2026-12-10 09:00" is never shown: whoever reads it must know which clock it is on.
"""

from datetime import UTC, datetime

from django.utils import timezone

DISPLAY_FORMAT = "%Y-%m-%d %H:%M %Z"
DISPLAY_FORMAT_SECONDS = "%Y-%m-%d %H:%M:%S %Z"


def format_local_time(value: datetime | None, *, seconds: bool = False, tz=None) -> str:
    """'2026-12-10 09:00 CST' in `tz` (default: the active zone, UTC when none is active). "" for None.

    A naive value is taken as UTC (the database's zone), never as local time.
    """
    if value is None:
        return ""
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(tz or timezone.get_current_timezone())
    return local.strftime(DISPLAY_FORMAT_SECONDS if seconds else DISPLAY_FORMAT)


def current_time_zone_name() -> str:
    """The zone times are shown in right now, by its full name ('Asia/Shanghai', 'UTC')."""
    return timezone.get_current_timezone_name()


def _instant(value: datetime | str) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value


def format_local_date(value: datetime | str) -> str:
    """The day of an instant in the active zone: '2026-03-01' (an ISO 8601 string is accepted, as
    notifications store their times)."""
    return f"{timezone.localtime(_instant(value)):%Y-%m-%d}"


def local_zone_abbreviation(value: datetime | str) -> str:
    """The active zone's abbreviation at that instant: 'CST', 'EST' or 'EDT', 'UTC'."""
    return timezone.localtime(_instant(value)).tzname() or current_time_zone_name()
