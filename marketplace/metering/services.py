"""Writes of metering: ingesting a batch of usage samples, and refreshing the hourly rollup.

See marketplace/metering/__init__.py for the design (and the rule that billing does not read samples).
Both writes are single set-based statements over the whole batch or the whole set of dirty hours:
at 1,700 samples/s nothing here may go row by row.
"""

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from inventory.allocations import device_reservation_ids_at
from inventory.selectors import node_device_ids

MAX_BATCH_SAMPLES = 5000
# The agent measures a minute at a time; an hour is generous for one that was paused or is catching up.
MAX_WINDOW_SECONDS = 3600
# How far ahead of the server's clock a window may end (the agent's clock may run a little fast).
CLOCK_SKEW_SECONDS = 120
# Plausibility bounds: a card is not 4 TiB nor 5 kW; beyond them the agent is broken.
MAX_MEMORY_USED_MIB = 4 * 1024 * 1024
MAX_POWER_WATTS = 5000
# A refused batch lists at most this many reasons (enough to fix an agent, short enough to read).
MAX_REPORTED_ERRORS = 20

SAMPLE_FIELDS = frozenset(
    {
        "sample_id",
        "device",
        "window_start",
        "window_end",
        "busy_seconds",
        "utilization_percent",
        "memory_used_mib",
        "power_watts",
    }
)


class UsageBatchInvalid(Exception):
    """The batch is malformed or not the node's to report; nothing of it was stored (HTTP 400)."""

    def __init__(self, message: str, fields: dict[str, list[str]]):
        super().__init__(message)
        self.message = message
        self.fields = fields


@dataclass(frozen=True)
class UsageIngestResult:
    received: int
    new: int
    duplicates: int


def _retention() -> timedelta:
    return timedelta(days=settings.USAGE_SAMPLE_RETENTION_DAYS)


def _datetime(value) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("an ISO 8601 date-time with a time zone, e.g. 2026-12-01T10:00:00Z")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("needs a time zone (e.g. Z or +08:00)")
    return parsed.astimezone(UTC)


def _number(value, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("a number")
    if not low <= value <= high:
        raise ValueError(f"between {low:g} and {high:g}")
    return float(value)


class _Columns:
    """The batch as column arrays, the shape the INSERT takes (unnest of one array per column)."""

    def __init__(self):
        self.device_ids: list[int] = []
        self.starts: list[datetime] = []
        self.ends: list[datetime] = []
        self.sample_ids: list[str] = []
        self.busy: list[float] = []
        self.utilization: list[float] = []
        self.memory: list[int] = []
        self.power: list[float] = []


def _parse_batch(*, samples, device_ids: set[int], now: datetime) -> _Columns:
    """Validate every sample; raise UsageBatchInvalid listing what is wrong (nothing is stored then)."""
    if not isinstance(samples, list) or not samples:
        raise UsageBatchInvalid("samples: a non-empty list of samples", {"samples": ["A non-empty list of samples."]})
    if len(samples) > MAX_BATCH_SAMPLES:
        message = f"At most {MAX_BATCH_SAMPLES} samples per batch (got {len(samples)}); send several batches."
        raise UsageBatchInvalid(message, {"samples": [message]})
    latest_end = now + timedelta(seconds=CLOCK_SKEW_SECONDS)
    earliest_start = now - _retention()
    errors: dict[str, list[str]] = {}
    columns = _Columns()
    seen: set[tuple[int, datetime]] = set()

    def refuse(index: int, field: str, reason: str) -> None:
        errors.setdefault(f"samples[{index}].{field}", []).append(reason)

    for index, sample in enumerate(samples):
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
        if not isinstance(sample, dict):
            refuse(index, "sample", "An object with the sample's fields.")
            continue
        keys = sample.keys()
        if keys != SAMPLE_FIELDS:
            for name in sorted(SAMPLE_FIELDS - keys):
                refuse(index, name, "This field is required.")
            for name in sorted(str(key)[:40] for key in keys - SAMPLE_FIELDS)[:5]:
                refuse(index, name, "Unknown field.")
            continue
        try:
            sample_id = str(uuid.UUID(sample["sample_id"])) if isinstance(sample["sample_id"], str) else None
        except ValueError:
            sample_id = None
        if sample_id is None:
            refuse(index, "sample_id", "A UUID, e.g. 0b6f6c1e-3f2a-4c2b-9a53-5d8e1c9f7a10.")
        device = sample["device"]
        if isinstance(device, bool) or not isinstance(device, int):
            refuse(index, "device", "A device id (an integer).")
        elif device not in device_ids:
            refuse(index, "device", f"Device {device} is not a device of this node.")
        try:
            start = _datetime(sample["window_start"])
        except ValueError as error:
            refuse(index, "window_start", f"Must be {error}.")
            start = None
        try:
            end = _datetime(sample["window_end"])
        except ValueError as error:
            refuse(index, "window_end", f"Must be {error}.")
            end = None
        length = None
        if start is not None and end is not None:
            length = (end - start).total_seconds()
            if length <= 0:
                refuse(index, "window_end", "Must be after window_start.")
            elif length > MAX_WINDOW_SECONDS:
                refuse(index, "window_end", f"A window is at most {MAX_WINDOW_SECONDS} seconds long.")
            if end > latest_end:
                refuse(index, "window_end", "Is in the future (check the node's clock).")
            if start < earliest_start:
                refuse(
                    index, "window_start", f"Is older than the {settings.USAGE_SAMPLE_RETENTION_DAYS}-day retention."
                )
        try:
            busy = _number(sample["busy_seconds"], low=0, high=MAX_WINDOW_SECONDS)
            if length is not None and length > 0 and busy > length:
                refuse(index, "busy_seconds", "Cannot exceed the window's length.")
        except ValueError as error:
            refuse(index, "busy_seconds", f"Must be {error}.")
            busy = None
        try:
            utilization = _number(sample["utilization_percent"], low=0, high=100)
        except ValueError as error:
            refuse(index, "utilization_percent", f"Must be {error}.")
            utilization = None
        memory = sample["memory_used_mib"]
        if isinstance(memory, bool) or not isinstance(memory, int) or not 0 <= memory <= MAX_MEMORY_USED_MIB:
            refuse(index, "memory_used_mib", f"Must be a whole number of MiB between 0 and {MAX_MEMORY_USED_MIB}.")
        try:
            power = _number(sample["power_watts"], low=0, high=MAX_POWER_WATTS)
        except ValueError as error:
            refuse(index, "power_watts", f"Must be {error}.")
            power = None
        if errors:
            continue
        # The same window twice in one batch: the first one counts, as it would across batches
        # (and one INSERT must not meet its own key twice in an order SQL does not promise).
        if (device, start) in seen:
            continue
        seen.add((device, start))
        columns.device_ids.append(device)
        columns.starts.append(start)
        columns.ends.append(end)
        columns.sample_ids.append(sample_id)
        columns.busy.append(busy)
        columns.utilization.append(utilization)
        columns.memory.append(memory)
        columns.power.append(power)
    if errors:
        first_field, first_reasons = next(iter(errors.items()))
        suffix = "" if len(errors) == 1 else f" (and {len(errors) - 1} more)"
        raise UsageBatchInvalid(f"Nothing was stored: {first_field}: {first_reasons[0]}{suffix}", errors)
    return columns


# One statement per batch: the samples (ON CONFLICT DO NOTHING: a duplicate is skipped, never an
# error) and, for the new ones only, their (device, hour) marked dirty for the rollup. The dirty
# mark is an upsert (DO UPDATE), not DO NOTHING, on purpose: it row-locks the mark until this
# batch commits, so a rollup that is taking the same mark waits and then sees these samples
# (usage_rollup_refresh skips locked marks), and a batch can never slip between a rollup's
# read of the samples and its removal of the mark.
_INGEST_SQL = """
WITH incoming AS (
    SELECT * FROM unnest(%(device_ids)s::bigint[], %(starts)s::timestamptz[], %(ends)s::timestamptz[],
                         %(sample_ids)s::uuid[], %(reservation_ids)s::bigint[], %(busy)s::float8[],
                         %(utilization)s::float8[], %(memory)s::integer[], %(power)s::float8[])
        AS t(device_id, window_start, window_end, sample_id, reservation_id, busy_seconds,
             utilization_percent, memory_used_mib, power_watts)
), inserted AS (
    INSERT INTO marketplace_usagesample (device_id, window_start, window_end, sample_id, node_id, reservation_id,
                                         busy_seconds, utilization_percent, memory_used_mib, power_watts, received_at)
    SELECT device_id, window_start, window_end, sample_id, %(node_id)s, reservation_id,
           busy_seconds, utilization_percent, memory_used_mib, power_watts, %(now)s
    FROM incoming
    ON CONFLICT DO NOTHING
    RETURNING device_id, window_start
), dirty AS (
    INSERT INTO marketplace_usagerollupdirty (device_id, hour, marked_at)
    SELECT DISTINCT device_id, date_trunc('hour', window_start, 'UTC'), %(now)s::timestamptz FROM inserted
    ORDER BY 1, 2
    ON CONFLICT (device_id, hour) DO UPDATE SET marked_at = EXCLUDED.marked_at
)
SELECT count(*) FROM inserted
"""


def usage_samples_ingest(*, node_id: int, samples: list, now: datetime | None = None) -> UsageIngestResult:
    """Store a node agent's batch of usage samples. Idempotent: a sample already stored (same device
    and window start) counts as a duplicate and changes nothing.

    The whole batch is validated first; UsageBatchInvalid (nothing stored) when any sample is
    malformed, names a device this node does not hold, lies in the future (beyond CLOCK_SKEW_SECONDS)
    or before the retention, or when the batch is empty or larger than MAX_BATCH_SAMPLES.
    """
    now = now or timezone.now()
    columns = _parse_batch(samples=samples, device_ids=node_device_ids(node_id=node_id), now=now)
    midpoints = [start + (end - start) / 2 for start, end in zip(columns.starts, columns.ends, strict=True)]
    reservation_ids = device_reservation_ids_at(device_ids=columns.device_ids, instants=midpoints)
    with connection.cursor() as cursor:
        cursor.execute(
            _INGEST_SQL,
            {
                "device_ids": columns.device_ids,
                "starts": columns.starts,
                "ends": columns.ends,
                "sample_ids": columns.sample_ids,
                "reservation_ids": reservation_ids,
                "busy": columns.busy,
                "utilization": columns.utilization,
                "memory": columns.memory,
                "power": columns.power,
                "node_id": node_id,
                "now": now,
            },
        )
        new = cursor.fetchone()[0]
    return UsageIngestResult(received=len(samples), new=new, duplicates=len(samples) - new)


# The rollup of a set of hours, from the raw samples. energy: W x s / 3600 = Wh.
_ROLLUP_SELECT = """
SELECT date_trunc('hour', s.window_start, 'UTC') AS hour, s.device_id, max(s.node_id), s.reservation_id,
       count(*), sum(s.busy_seconds), avg(s.utilization_percent), max(s.memory_used_mib),
       sum(s.power_watts * extract(epoch FROM s.window_end - s.window_start)) / 3600.0, %(now)s::timestamptz
FROM {source}
GROUP BY 1, s.device_id, s.reservation_id
"""
_ROLLUP_UPSERT = """
INSERT INTO marketplace_usagehourly (hour, device_id, node_id, reservation_id, samples, busy_seconds,
                                     utilization_mean, memory_max_mib, energy_wh, computed_at)
{select}
ON CONFLICT ON CONSTRAINT usage_hourly_unique_hour_device_reservation DO UPDATE SET
    samples = EXCLUDED.samples, busy_seconds = EXCLUDED.busy_seconds, utilization_mean = EXCLUDED.utilization_mean,
    memory_max_mib = EXCLUDED.memory_max_mib, energy_wh = EXCLUDED.energy_wh, computed_at = EXCLUDED.computed_at
"""
_ROLLUP_OF_PAIRS = _ROLLUP_UPSERT.format(
    select=_ROLLUP_SELECT.format(
        source="unnest(%(device_ids)s::bigint[], %(hours)s::timestamptz[]) AS d(device_id, hour) "
        "JOIN marketplace_usagesample s ON s.device_id = d.device_id "
        "AND s.window_start >= d.hour AND s.window_start < d.hour + interval '1 hour'"
    )
)
_ROLLUP_OF_RANGE = _ROLLUP_UPSERT.format(
    select=_ROLLUP_SELECT.format(
        source="marketplace_usagesample s WHERE s.window_start >= %(start)s AND s.window_start < %(end)s"
    )
)
# Take up to %(limit)s dirty marks, oldest hours first; marks a running ingest holds are skipped
# (they will be taken by a later run, after that ingest commits).
_CLAIM_DIRTY = """
DELETE FROM marketplace_usagerollupdirty d
USING (SELECT device_id, hour FROM marketplace_usagerollupdirty ORDER BY hour, device_id
       LIMIT %(limit)s FOR UPDATE SKIP LOCKED) pick
WHERE d.device_id = pick.device_id AND d.hour = pick.hour
RETURNING d.device_id, d.hour
"""


def usage_rollup_refresh(*, limit: int = 20_000, now: datetime | None = None) -> int:
    """Recompute the hourly rollup of up to `limit` (device, hour) pairs that received samples since
    their last rollup. Returns how many pairs were recomputed (0: nothing to do).

    Claim and recompute commit together: a worker that dies midway leaves the marks in place. Safe
    to run concurrently (marks are taken with SKIP LOCKED) and repeatedly (the upsert is a recomputation).
    """
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_DIRTY, {"limit": limit})
        pairs = cursor.fetchall()
        if pairs:
            cursor.execute(
                _ROLLUP_OF_PAIRS,
                {"device_ids": [device_id for device_id, _ in pairs], "hours": [hour for _, hour in pairs], "now": now},
            )
    return len(pairs)


def usage_rollup_recompute(*, start: datetime, end: datetime, now: datetime | None = None) -> int:
    """Recompute the rollup of every sample whose window starts in [start, end), in one statement
    (repairs and backfills; the beat task uses usage_rollup_refresh). Returns the rollup rows written.
    `start` and `end` must be on the hour: an hour rolled up from part of its samples would be wrong."""
    for edge in (start, end):
        if edge.utcoffset() is None or edge.astimezone(UTC) != edge.astimezone(UTC).replace(
            minute=0, second=0, microsecond=0
        ):
            raise ValueError("start and end must be aware datetimes on the hour (UTC).")
    with connection.cursor() as cursor:
        cursor.execute(_ROLLUP_OF_RANGE, {"start": start, "end": end, "now": now or timezone.now()})
        return cursor.rowcount
