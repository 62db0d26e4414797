"""The daily partitions of marketplace_usagesample: created ahead, dropped after the retention.

Partition P covers the UTC day [D, D+1) of window_start and is named marketplace_usagesample_pYYYYMMDD.
Beat runs usage_partitions_maintain hourly; both halves are idempotent and serialized by an
advisory lock, so two beats (or a manual run) cannot race.

Inserts never fail for want of a partition: a sample whose day has no partition yet goes to the
DEFAULT partition. Creating the partition of a day that already has rows in DEFAULT moves them
first (PostgreSQL refuses to attach a partition whose rows sit in DEFAULT).

A day is dropped once every instant in it is older than USAGE_SAMPLE_RETENTION_DAYS - exactly the
samples ingestion would refuse as too old, so a dropped day is never written again. Dropping a
partition is a metadata operation: no DELETE of 144 million rows, no vacuum debt.
"""

import re
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

PARENT = "marketplace_usagesample"
DEFAULT_PARTITION = f"{PARENT}_default"
_DAILY_NAME = re.compile(rf"^{PARENT}_p(\d{{8}})$")
# pg_advisory_xact_lock key: "usage partitions" (any constant; only this module uses it).
_ADVISORY_LOCK = 7_210_001


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def usage_partitions_list() -> list[date]:
    """The days that have their own partition, in order."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [PARENT],
        )
        days = []
        for (name,) in cursor.fetchall():
            match = _DAILY_NAME.match(name)
            if match:
                days.append(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date())
    return sorted(days)


def _partition_create(cursor, day: date) -> None:
    name, low, high = partition_name(day), _day_start(day), _day_start(day + timedelta(days=1))
    # Keep concurrent inserts out of DEFAULT while its rows of that day move (a short lock; inserts wait).
    cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
    # Table names here are this module's constants and dates, never input: the f-strings are safe.
    probe = f"SELECT 1 FROM {DEFAULT_PARTITION} WHERE window_start >= %s AND window_start < %s LIMIT 1"  # noqa: S608
    cursor.execute(probe, [low, high])
    if cursor.fetchone() is None:
        cursor.execute(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM (%s) TO (%s)", [low, high])
        return
    cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    move = f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE window_start >= %s AND window_start < %s RETURNING *) INSERT INTO {name} SELECT * FROM moved"  # noqa: S608
    cursor.execute(move, [low, high])
    cursor.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [low, high])


def usage_partitions_ensure(
    *, days_ahead: int | None = None, days_back: int = 0, now: datetime | None = None
) -> list[date]:
    """Create the partitions of today and the next `days_ahead` days (UTC) that do not exist yet,
    and of the last `days_back` days (a backfill: their rows waiting in DEFAULT move in).
    Idempotent. Returns the days created."""
    days_ahead = settings.USAGE_SAMPLE_PARTITIONS_AHEAD_DAYS if days_ahead is None else days_ahead
    today = (now or timezone.now()).astimezone(UTC).date()
    created = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK])
        existing = set(usage_partitions_list())
        for offset in range(-days_back, days_ahead + 1):
            day = today + timedelta(days=offset)
            if day not in existing:
                _partition_create(cursor, day)
                created.append(day)
    return created


def usage_partitions_drop_expired(*, retention_days: int | None = None, now: datetime | None = None) -> list[date]:
    """Drop the daily partitions whose every instant is older than the retention, and the rows of
    DEFAULT that old. Returns the days dropped."""
    retention_days = settings.USAGE_SAMPLE_RETENTION_DAYS if retention_days is None else retention_days
    horizon = (now or timezone.now()) - timedelta(days=retention_days)
    dropped = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK])
        for day in usage_partitions_list():
            if _day_start(day + timedelta(days=1)) <= horizon:
                cursor.execute(f"DROP TABLE {partition_name(day)}")
                dropped.append(day)
        cursor.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE window_start < %s", [horizon])  # noqa: S608
    return dropped


def usage_partitions_maintain(*, now: datetime | None = None) -> dict:
    """What beat runs hourly: create ahead, then drop what is past the retention."""
    created = usage_partitions_ensure(now=now)
    dropped = usage_partitions_drop_expired(now=now)
    return {"created": [str(day) for day in created], "dropped": [str(day) for day in dropped]}
