"""The raw samples' daily partitions: created ahead idempotently, dropped only past the retention."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from marketplace.metering.partitions import (
    DEFAULT_PARTITION,
    partition_name,
    usage_partitions_drop_expired,
    usage_partitions_ensure,
    usage_partitions_list,
    usage_partitions_maintain,
)
from marketplace.metering.services import usage_samples_ingest
from marketplace.models import UsageSample
from tests.factories import NodeFactory
from tests.marketplace.metering_helpers import sample

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def rows_in(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - a test's own table names
        return cursor.fetchone()[0]


def days(*offsets: int) -> list:
    return [NOW.date() + timedelta(days=offset) for offset in offsets]


def test_creating_ahead_makes_today_and_the_next_days_and_is_idempotent(db):
    created = usage_partitions_ensure(days_ahead=3, now=NOW)
    assert created == days(0, 1, 2, 3)
    assert usage_partitions_ensure(days_ahead=3, now=NOW) == []
    assert usage_partitions_ensure(days_ahead=4, now=NOW) == days(4)
    assert usage_partitions_list() == days(0, 1, 2, 3, 4)


def test_samples_go_to_their_days_partition_and_those_waiting_in_default_move_into_a_new_one(catalog):
    node = NodeFactory(card_count=1)
    device = node.devices.get().pk
    usage_partitions_ensure(days_ahead=0, now=NOW)  # today only
    # Given a sample of today and one of tomorrow (no partition yet: it waits in DEFAULT)
    today = sample(device, NOW - timedelta(hours=1))
    tomorrow_start = datetime.combine(NOW.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    tomorrow = sample(device, tomorrow_start + timedelta(minutes=1))
    usage_samples_ingest(node_id=node.pk, samples=[today, tomorrow], now=tomorrow_start + timedelta(minutes=5))
    assert rows_in(partition_name(NOW.date())) == 1
    assert rows_in(DEFAULT_PARTITION) == 1

    # When tomorrow's partition is created
    usage_partitions_ensure(days_ahead=1, now=NOW)

    # Then the waiting sample moved into it, and nothing was lost or doubled
    assert rows_in(partition_name(NOW.date() + timedelta(days=1))) == 1
    assert rows_in(DEFAULT_PARTITION) == 0
    assert UsageSample.objects.count() == 2
    # And a retry of that sample is still a duplicate (the key holds across partitions)
    again = usage_samples_ingest(node_id=node.pk, samples=[tomorrow], now=tomorrow_start + timedelta(minutes=5))
    assert again.duplicates == 1


def test_dropping_past_the_retention_drops_only_days_wholly_older_than_it(catalog):
    node = NodeFactory(card_count=1)
    device = node.devices.get().pk
    # Given partitions from 40 days ago to today, each with a sample at 14:00 - created as time went by
    for back in (40, 36, 35, 34, 1, 0):
        day_now = NOW - timedelta(days=back)
        usage_partitions_ensure(days_ahead=0, now=day_now)
        usage_samples_ingest(node_id=node.pk, samples=[sample(device, day_now.replace(hour=14))], now=day_now)

    # When partitions past a 35-day retention are dropped (the horizon is 35 days before 15:30 today)
    dropped = usage_partitions_drop_expired(retention_days=35, now=NOW)

    # Then only the days that ended before the horizon went; the horizon's own day stays
    assert dropped == days(-40, -36)
    assert usage_partitions_list() == days(-35, -34, -1, 0)
    assert UsageSample.objects.count() == 4
    assert usage_partitions_drop_expired(retention_days=35, now=NOW) == []


def test_rows_older_than_the_retention_are_removed_from_default_too(catalog):
    node = NodeFactory(card_count=1)
    device = node.devices.get().pk
    old_now = NOW - timedelta(days=40)
    usage_samples_ingest(node_id=node.pk, samples=[sample(device, old_now.replace(hour=12))], now=old_now)
    usage_samples_ingest(node_id=node.pk, samples=[sample(device, NOW.replace(hour=12))], now=NOW)
    assert rows_in(DEFAULT_PARTITION) == 2

    usage_partitions_drop_expired(retention_days=35, now=NOW)

    assert rows_in(DEFAULT_PARTITION) == 1


@pytest.mark.parametrize("retention", [35, 7])
def test_the_beat_task_creates_ahead_then_drops_by_the_configured_retention(db, settings, retention):
    settings.USAGE_SAMPLE_RETENTION_DAYS = retention
    settings.USAGE_SAMPLE_PARTITIONS_AHEAD_DAYS = 2
    usage_partitions_ensure(days_ahead=0, now=NOW - timedelta(days=30))

    result = usage_partitions_maintain(now=NOW)

    assert result["created"] == [str(day) for day in days(0, 1, 2)]
    assert result["dropped"] == ([] if retention == 35 else [str(NOW.date() - timedelta(days=30))])
