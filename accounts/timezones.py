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
