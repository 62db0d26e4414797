"""Writes of metering: ingesting a batch of usage samples, and refreshing the hourly rollup.

See marketplace/metering/__init__.py for the design (and the rule that billing does not read samples).
Both writes are single set-based statements over the whole batch or the whole set of dirty hours:
at 1,700 samples/s nothing here may go row by row.
"""

import json
import math
import re
import weakref
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DataError, connection, transaction
from django.utils import timezone

from inventory.allocations import reservation_periods_sql
from inventory.selectors import node_device_ids, node_device_ids_sql

MAX_BATCH_SAMPLES = 5000
# The agent measures a minute at a time; an hour is generous for one that was paused or is catching up.
MAX_WINDOW_SECONDS = 3600
# How far ahead of the server's clock a window may end (the agent's clock may run a little fast).
CLOCK_SKEW_SECONDS = 120
# Plausibility bounds: a card is not 4 TiB nor 5 kW; beyond them the agent is broken.
MAX_MEMORY_USED_MIB = 4 * 1024 * 1024
MAX_POWER_WATTS = 5000
# Below this a non-zero busy time, utilization or power is noise no meter produces, and PostgreSQL
# raises "underflow" when float arithmetic on it rounds to zero (the rollup's energy, its means):
# such values are refused so that a stored sample can always be rolled up.
MIN_NONZERO = 1e-6
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


# The formats the API takes, checked the same way on both paths (see usage_samples_ingest).
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NUMBER = (int, float)


def _datetime(value) -> datetime:
    if not isinstance(value, str) or not _ISO_DATETIME.fullmatch(value):
        raise ValueError("an ISO 8601 date-time with a time zone, e.g. 2026-12-01T10:00:00Z")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC: Python overflows where PostgreSQL would not
        raise ValueError("a valid date-time between the years 1 and 9999 in UTC") from None


def _number(value, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("a number")
    if not low <= value <= high:
        raise ValueError(f"between {low:g} and {high:g}")
    if 0 < value < MIN_NONZERO:
        raise ValueError(f"0 or at least {MIN_NONZERO:g}")
    return float(value)


def _validate_batch(*, samples, device_ids: set[int], now: datetime) -> None:
    """Check every sample the slow, precise way; raise UsageBatchInvalid listing what is wrong.
    Runs only for a batch the fast path refused, to tell the agent why."""
    if not isinstance(samples, list) or not samples:
        raise UsageBatchInvalid("samples: a non-empty list of samples", {"samples": ["A non-empty list of samples."]})
    if len(samples) > MAX_BATCH_SAMPLES:
        message = f"At most {MAX_BATCH_SAMPLES} samples per batch (got {len(samples)}); send several batches."
        raise UsageBatchInvalid(message, {"samples": [message]})
    latest_end = now + timedelta(seconds=CLOCK_SKEW_SECONDS)
    earliest_start = now - _retention()
    errors: dict[str, list[str]] = {}

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
        sample_id = sample["sample_id"]
        if not isinstance(sample_id, str) or not _UUID.fullmatch(sample_id):
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
        try:
            _number(sample["utilization_percent"], low=0, high=100)
        except ValueError as error:
            refuse(index, "utilization_percent", f"Must be {error}.")
        memory = sample["memory_used_mib"]
        if isinstance(memory, bool) or not isinstance(memory, int) or not 0 <= memory <= MAX_MEMORY_USED_MIB:
            refuse(index, "memory_used_mib", f"Must be a whole number of MiB between 0 and {MAX_MEMORY_USED_MIB}.")
        try:
            _number(sample["power_watts"], low=0, high=MAX_POWER_WATTS)
        except ValueError as error:
            refuse(index, "power_watts", f"Must be {error}.")
    if errors:
        first_field, first_reasons = next(iter(errors.items()))
        suffix = "" if len(errors) == 1 else f" (and {len(errors) - 1} more)"
        raise UsageBatchInvalid(f"Nothing was stored: {first_field}: {first_reasons[0]}{suffix}", errors)


def _well_formed(samples) -> bool:
    """The cheap part of validation, done in Python before the batch goes to PostgreSQL: the shape,
    the JSON types and the text formats that PostgreSQL's casts would otherwise accept too loosely
    (a number in a string, a time without a zone, a boolean as a number). Ranges, windows and
    devices are checked in SQL (_INGEST_SQL)."""
    if not isinstance(samples, list) or not 0 < len(samples) <= MAX_BATCH_SAMPLES:
        return False
    fields, iso, uuid_shape, number = SAMPLE_FIELDS, _ISO_DATETIME.fullmatch, _UUID.fullmatch, _NUMBER
    # An agent sends the same minute for every card of its node, and one window's end is the next
    # one's start: a batch of 500 has ~60 distinct times, so each is matched once, not ~1,000 times.
    good_times: set[str] = set()
    for sample in samples:
        if not (
            type(sample) is dict
            and sample.keys() == fields
            and type(sample["device"]) is int
            and type(sample["memory_used_mib"]) is int
            and type(sample["busy_seconds"]) in number
            and type(sample["utilization_percent"]) in number
            and type(sample["power_watts"]) in number
            and type(sample["sample_id"]) is str
            and uuid_shape(sample["sample_id"])
        ):
            return False
        for time_text in (sample["window_start"], sample["window_end"]):
            if type(time_text) is not str:  # before the set lookup: a list or object is unhashable
                return False
            if time_text not in good_times:
                if not iso(time_text):
                    return False
                good_times.add(time_text)
    return True


# One statement per batch. PostgreSQL unpacks the batch's JSON itself (json_to_recordset: far
# cheaper than building and adapting Python objects per sample) and:
# 1. checks every rule Python did not (`bad` counts the samples that break one; any -> nothing is
#    inserted and the caller finds the reasons with _validate_batch);
# 2. attributes each sample to the reservation whose allocation covers the middle of its window
#    (the inventory calendar's few allocations of these devices over the batch's span);
# 3. inserts: ON CONFLICT DO NOTHING - a duplicate is skipped, never an error; within the batch the
#    first sample of a (device, window_start) wins, as it would across batches;
# 4. marks the (device, hour) of the new samples dirty for the rollup. The mark is an upsert (DO
#    UPDATE), not DO NOTHING, on purpose: it row-locks the mark until this batch commits, so a
#    rollup taking the same mark (usage_rollup_refresh skips locked marks) cannot read the samples
#    before this batch commits and then delete the mark.
_INGEST_TEMPLATE = """
WITH node_devices AS (
    SELECT {node_devices} AS ids
), incoming AS MATERIALIZED (
    SELECT * FROM ROWS FROM (json_to_recordset(%(samples)s::json) AS (
        sample_id uuid, device bigint, window_start timestamptz, window_end timestamptz,
        busy_seconds float8, utilization_percent float8, memory_used_mib integer, power_watts float8
    )) WITH ORDINALITY AS t(sample_id, device, window_start, window_end, busy_seconds, utilization_percent,
                           memory_used_mib, power_watts, position)
), verdict AS (
    SELECT count(*) FILTER (WHERE NOT coalesce(
               device = ANY((SELECT ids FROM node_devices)::bigint[])
               AND window_end > window_start
               AND window_end - window_start <= %(max_window)s
               AND window_end <= %(latest_end)s AND window_start >= %(earliest_start)s
               AND busy_seconds >= 0 AND busy_seconds <= date_part('epoch', window_end - window_start)
               AND utilization_percent BETWEEN 0 AND 100
               AND memory_used_mib BETWEEN 0 AND %(max_memory)s
               AND power_watts BETWEEN 0 AND %(max_power)s
               AND (busy_seconds = 0 OR busy_seconds >= %(min_nonzero)s)
               AND (utilization_percent = 0 OR utilization_percent >= %(min_nonzero)s)
               AND (power_watts = 0 OR power_watts >= %(min_nonzero)s)
               AND sample_id IS NOT NULL, false)) AS bad,
           tstzrange(min(window_start), max(window_end), '[]') AS span
    FROM incoming
), calendar AS (
    {calendar}
), inserted AS (
    INSERT INTO marketplace_usagesample (device_id, window_start, window_end, sample_id, node_id, reservation_id,
                                         busy_seconds, utilization_percent, memory_used_mib, power_watts, received_at)
    SELECT DISTINCT ON (i.device, i.window_start)
           i.device, i.window_start, i.window_end, i.sample_id, %(node_id)s, c.reservation_id,
           i.busy_seconds, i.utilization_percent, i.memory_used_mib, i.power_watts, %(now)s
    FROM incoming i
    LEFT JOIN calendar c ON c.device_id = i.device AND c.period @> (i.window_start + (i.window_end - i.window_start) / 2)
    WHERE (SELECT bad FROM verdict) = 0
    ORDER BY i.device, i.window_start, i.position
    ON CONFLICT DO NOTHING
    RETURNING device_id, window_start
), dirty AS (
    INSERT INTO marketplace_usagerollupdirty (device_id, hour, marked_at)
    SELECT DISTINCT device_id, date_bin('1 hour', window_start, 'epoch'::timestamptz), %(now)s::timestamptz FROM inserted
    ORDER BY 1, 2
    ON CONFLICT (device_id, hour) DO UPDATE SET marked_at = EXCLUDED.marked_at
)
SELECT (SELECT bad FROM verdict), (SELECT count(*) FROM inserted)
"""
_INGEST_SQL = _INGEST_TEMPLATE.format(
    node_devices=node_device_ids_sql(node_id="%(node_id)s"),
    calendar=reservation_periods_sql(device_ids="(SELECT ids FROM node_devices)::bigint[]", span="(SELECT span FROM verdict)"),
)

# The statement is prepared once per database connection (PREPARE ... AS, then EXECUTE per batch):
# planning it took ~1.7 ms of the ~6 ms it costs per 500-sample batch, and its plan does not depend
# on the batch (the JSON's row estimate is a constant). PostgreSQL replans it by itself after DDL
# (a partition created or dropped). Parameters in this order, with these types:
_INGEST_PARAMS = (
    ("samples", "text"),
    ("node_id", "bigint"),
    ("now", "timestamptz"),
    ("latest_end", "timestamptz"),
    ("earliest_start", "timestamptz"),
    ("max_window", "interval"),
    ("max_memory", "integer"),
    ("max_power", "float8"),
    ("min_nonzero", "float8"),
)
_INGEST_STATEMENT = "marketplace_usage_ingest_v1"  # rename when _INGEST_SQL changes (a running server prepared the old one)


def _ingest_prepare_sql() -> str:
    text = _INGEST_SQL
    for position, (name, _) in enumerate(_INGEST_PARAMS, start=1):
        text = text.replace(f"%({name})s", f"${position}")
    if "%(" in text:
        raise ValueError("_INGEST_PARAMS misses a parameter of _INGEST_SQL")
    types = ", ".join(kind for _, kind in _INGEST_PARAMS)
    return f"PREPARE {_INGEST_STATEMENT} ({types}) AS {text}"


_INGEST_PREPARE = _ingest_prepare_sql()
_INGEST_EXECUTE = f"EXECUTE {_INGEST_STATEMENT} ({', '.join(['%s'] * len(_INGEST_PARAMS))})"
# The DB-API connections (psycopg2) the statement is prepared on: a prepared statement lives as long
# as its session and survives rollbacks; a new connection (CONN_MAX_AGE, a health check) prepares anew.
_prepared_on: "weakref.WeakSet" = weakref.WeakSet()


def _ingest_execute(cursor, params: dict) -> tuple[int, int]:
    raw = connection.connection
    if raw not in _prepared_on:
        cursor.execute(_INGEST_PREPARE)
        _prepared_on.add(raw)
    cursor.execute(_INGEST_EXECUTE, [params[name] for name, _ in _INGEST_PARAMS])
    return cursor.fetchone()


def _samples_text(body_json: str) -> str:
    """The text of the samples array in a body that is a JSON object with the one key "samples".

    Handing PostgreSQL the array itself spares it a parse of the whole body to find the key (`-> 'samples'`
    read all ~150 KB of a 500-sample batch once more). In such an object the first colon is the one
    after the key (nothing but whitespace, `{` and the key come before it, and a key containing a
    colon would not be "samples") and the last `}` closes the object. A body naming the key twice
    yields no valid array here, so PostgreSQL refuses it and the batch is refused as a whole.
    """
    return body_json[body_json.index(":") + 1 : body_json.rindex("}")]


def usage_samples_ingest(
    *, node_id: int, samples: list, body_json: str | None = None, now: datetime | None = None
) -> UsageIngestResult:
    """Store a node agent's batch of usage samples. Idempotent: a sample already stored (same device
    and window start) counts as a duplicate and changes nothing.

    `body_json` is the request body the samples were parsed from, if at hand: a JSON object whose one
    key is "samples" (the caller checked that); PostgreSQL reads the batch from its text. Raises
    UsageBatchInvalid (nothing stored) when any sample is malformed, names a device this node does
    not hold, lies in the future (beyond CLOCK_SKEW_SECONDS) or before the retention, or when the
    batch is empty or larger than MAX_BATCH_SAMPLES.
    """
    now = now or timezone.now()
    if not _well_formed(samples):
        _validate_batch(samples=samples, device_ids=node_device_ids(node_id=node_id), now=now)
    params = {
        "samples": json.dumps(samples) if body_json is None else _samples_text(body_json),
        "node_id": node_id,
        "now": now,
        "latest_end": now + timedelta(seconds=CLOCK_SKEW_SECONDS),
        "earliest_start": now - _retention(),
        "max_window": timedelta(seconds=MAX_WINDOW_SECONDS),
        "max_memory": MAX_MEMORY_USED_MIB,
        "max_power": MAX_POWER_WATTS,
        "min_nonzero": MIN_NONZERO,
    }
    try:
        # One statement is atomic by itself; inside a caller's transaction a savepoint keeps a
        # refused batch from aborting it.
        with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
            bad, new = _ingest_execute(cursor, params)
    except DataError:
        bad, new = 1, 0  # a value PostgreSQL cannot read (NaN, a number too large): find which below
    if bad:
        _validate_batch(samples=samples, device_ids=node_device_ids(node_id=node_id), now=now)
        message = "Nothing was stored: a sample breaks a rule the database checks (ranges, windows, devices)."
        raise UsageBatchInvalid(message, {"samples": [message]})
    return UsageIngestResult(received=len(samples), new=new, duplicates=len(samples) - new)


# The rollup of a set of hours, from the raw samples. energy: W x s / 3600 = Wh. date_part, not
# extract: extract(epoch ...) is numeric since PostgreSQL 14, several times slower per row; date_bin
# from the epoch, not date_trunc(..., 'UTC'): the same UTC hour by arithmetic, without a time zone
# conversion per row.
_ROLLUP_SELECT = """
SELECT date_bin('1 hour', s.window_start, 'epoch'::timestamptz) AS hour, s.device_id, max(s.node_id) AS node_id,
       s.reservation_id, count(*) AS samples, sum(s.busy_seconds) AS busy_seconds,
       avg(s.utilization_percent) AS utilization_mean, max(s.memory_used_mib) AS memory_max_mib,
       sum(s.power_watts * date_part('epoch', s.window_end - s.window_start)) / 3600.0 AS energy_wh,
       %(now)s::timestamptz AS computed_at
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
WHERE (marketplace_usagehourly.samples, marketplace_usagehourly.busy_seconds, marketplace_usagehourly.utilization_mean,
       marketplace_usagehourly.memory_max_mib, marketplace_usagehourly.energy_wh)
      IS DISTINCT FROM (EXCLUDED.samples, EXCLUDED.busy_seconds, EXCLUDED.utilization_mean, EXCLUDED.memory_max_mib,
                        EXCLUDED.energy_wh)
"""
# The WHERE skips rows whose figures did not change: a recompute of settled hours (a repair, a
# backfill run twice) then writes nothing - no new row version, index entries or WAL per row, which
# were ~95% of a day's recompute (bench/README.md). computed_at is when the figures were last written.
# (Reservation ids are positive: coalesce(..., 0) stands for "idle" in the range join below.)
_ROLLUP_OF_PAIRS = _ROLLUP_UPSERT.format(
    select=_ROLLUP_SELECT.format(
        source="unnest(%(device_ids)s::bigint[], %(hours)s::timestamptz[]) AS d(device_id, hour) "
        "JOIN marketplace_usagesample s ON s.device_id = d.device_id "
        "AND s.window_start >= d.hour AND s.window_start < d.hour + interval '1 hour'"
    )
)
# A range (a day: ~2.4 million rows at 100,000 cards) is first compared with the rows it would
# replace, in one hash join over the range's existing hourly rows: only new or changed rows reach the
# upsert. Without it, ON CONFLICT probes and row-locks every existing row even when its WHERE then
# skips it (measured: 1.45 s of a 1.85 s recompute of an unchanged day at 5,000 cards).
_ROLLUP_OF_RANGE = _ROLLUP_UPSERT.format(
    select="""
WITH rolled AS MATERIALIZED ({select})
SELECT r.* FROM rolled r
LEFT JOIN marketplace_usagehourly h
  ON h.hour >= %(start)s AND h.hour < %(end)s
 AND h.hour = r.hour AND h.device_id = r.device_id AND coalesce(h.reservation_id, 0) = coalesce(r.reservation_id, 0)
WHERE h.id IS NULL
   OR (h.samples, h.busy_seconds, h.utilization_mean, h.memory_max_mib, h.energy_wh)
      IS DISTINCT FROM (r.samples, r.busy_seconds, r.utilization_mean, r.memory_max_mib, r.energy_wh)
""".format(
        select=_ROLLUP_SELECT.format(
            source="marketplace_usagesample s WHERE s.window_start >= %(start)s AND s.window_start < %(end)s"
        )
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
    with transaction.atomic(), connection.cursor() as cursor:
        # A range is whole daily partitions or most of one: aggregate them by hashing a sequential
        # scan in memory. Left to itself the planner walks the key index to get rows presorted by
        # device - more than twice as slow over a day of samples.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(_ROLLUP_OF_RANGE, {"start": start, "end": end, "now": now or timezone.now()})
        return cursor.rowcount
