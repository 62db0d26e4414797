"""The hourly rollup: recomputed for the hours that received samples, late samples included; per reservation."""

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from inventory.allocations import device_allocations_for_reservation
from marketplace.metering.selectors import reservation_usage_hours, reservation_usage_summary
from marketplace.metering.services import usage_rollup_recompute, usage_rollup_refresh, usage_samples_ingest
from marketplace.models import UsageHourly, UsageRollupDirty
from tests.factories import NodeFactory
from tests.marketplace.metering_helpers import book, sample


@pytest.fixture
def node(catalog):
    return NodeFactory(card_count=2)


@pytest.fixture
def hour():
    return timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def test_a_late_sample_corrects_its_hour_and_a_second_refresh_changes_nothing(node, hour):
    device = node.devices.get(index=0).pk
    # Given an hour rolled up from two samples
    usage_samples_ingest(
        node_id=node.pk,
        samples=[sample(device, hour, utilization=20.0), sample(device, hour + timedelta(minutes=1), utilization=40.0)],
    )
    assert usage_rollup_refresh() == 1
    row = UsageHourly.objects.get()
    assert (row.samples, row.utilization_mean, row.busy_seconds) == (2, pytest.approx(30.0), pytest.approx(36.0))

    # When a late sample of that hour arrives and the rollup runs again
    usage_samples_ingest(node_id=node.pk, samples=[sample(device, hour + timedelta(minutes=59), utilization=90.0)])
    assert usage_rollup_refresh() == 1

    # Then the hour is corrected in place (same row), and another run has nothing to do
    row = UsageHourly.objects.get()
    assert (row.samples, row.utilization_mean) == (3, pytest.approx(50.0))
    assert row.energy_wh == pytest.approx(3 * 500 * 60 / 3600)
    assert usage_rollup_refresh() == 0
    assert UsageHourly.objects.get().computed_at == row.computed_at


def test_a_refresh_takes_at_most_its_limit_and_leaves_the_rest_marked(node, hour):
    device = node.devices.get(index=0).pk
    usage_samples_ingest(node_id=node.pk, samples=[sample(device, hour + timedelta(hours=h)) for h in range(3)])
    assert usage_rollup_refresh(limit=2) == 2
    assert UsageRollupDirty.objects.count() == 1
    assert usage_rollup_refresh(limit=2) == 1
    assert UsageHourly.objects.count() == 3


def test_an_hour_shared_by_a_reservation_and_idle_time_has_a_row_for_each(small_offer, soon):
    # Given a reservation that starts at `soon`, and samples of one of its cards before and after
    reservation = book(small_offer, cards=1, start=soon + timedelta(minutes=30), end=soon + timedelta(hours=2))
    allocation = device_allocations_for_reservation(reservation_id=reservation.pk).get()
    samples = [sample(allocation.device_id, soon + timedelta(minutes=m)) for m in (0, 10, 40, 50, 55)]
    usage_samples_ingest(node_id=allocation.node_id, samples=samples, now=soon + timedelta(hours=3))

    # When the rollup runs
    usage_rollup_refresh()

    # Then the hour is split: 2 idle samples, 3 of the reservation
    rows = {row.reservation_id: row.samples for row in UsageHourly.objects.filter(hour=soon)}
    assert rows == {None: 2, reservation.pk: 3}
    assert [row.hour for row in reservation_usage_hours(reservation=reservation)] == [soon]
    summary = reservation_usage_summary(reservation=reservation)
    assert summary["samples"] == 3
    assert summary["busy_seconds"] == pytest.approx(3 * 30.0)
    assert summary["utilization_mean"] == pytest.approx(50.0)
    assert summary["energy_wh"] == pytest.approx(3 * 500 * 60 / 3600)


def test_recomputing_a_range_gives_what_the_refresh_gave(node, hour):
    devices = list(node.devices.values_list("id", flat=True))
    usage_samples_ingest(
        node_id=node.pk,
        samples=[sample(d, hour + timedelta(minutes=m), utilization=m % 100) for d in devices for m in range(0, 150, 7)],
    )
    usage_rollup_refresh()
    refreshed = sorted(UsageHourly.objects.values_list("hour", "device_id", "samples", "busy_seconds", "utilization_mean"))
    UsageHourly.objects.all().delete()

    written = usage_rollup_recompute(start=hour, end=hour + timedelta(hours=3))

    assert written == len(refreshed) == 6
    assert sorted(UsageHourly.objects.values_list("hour", "device_id", "samples", "busy_seconds", "utilization_mean")) == refreshed


def test_recomputing_settled_hours_writes_nothing_and_a_changed_hour_is_rewritten(node, hour):
    device = node.devices.get(index=0).pk
    # Given two hours of samples, rolled up once
    usage_samples_ingest(node_id=node.pk, samples=[sample(device, hour + timedelta(minutes=m)) for m in (0, 30, 60, 90)])
    assert usage_rollup_recompute(start=hour, end=hour + timedelta(hours=2)) == 2
    before = dict(UsageHourly.objects.values_list("hour", "computed_at"))

    # When the same range is recomputed with nothing changed, then no row is written
    assert usage_rollup_recompute(start=hour, end=hour + timedelta(hours=2)) == 0
    assert dict(UsageHourly.objects.values_list("hour", "computed_at")) == before

    # When a late sample lands in the first hour, then only that hour is rewritten, with it
    usage_samples_ingest(node_id=node.pk, samples=[sample(device, hour + timedelta(minutes=45), utilization=90.0)])
    assert usage_rollup_recompute(start=hour, end=hour + timedelta(hours=2)) == 1
    assert dict(UsageHourly.objects.values_list("hour", "samples")) == {hour: 3, hour + timedelta(hours=1): 2}
    assert UsageHourly.objects.get(hour=hour + timedelta(hours=1)).computed_at == before[hour + timedelta(hours=1)]


def test_recomputing_refuses_a_range_that_cuts_an_hour(hour):
    with pytest.raises(ValueError):
        usage_rollup_recompute(start=hour + timedelta(minutes=5), end=hour + timedelta(hours=1))


def test_the_beat_task_rolls_up_every_marked_hour_and_is_scheduled(node, hour, settings):
    from marketplace.tasks import usage_partitions_maintain_task, usage_rollup_refresh_task

    device = node.devices.get(index=1).pk
    usage_samples_ingest(node_id=node.pk, samples=[sample(device, hour + timedelta(hours=h)) for h in range(3)])

    assert usage_rollup_refresh_task() == 3
    assert usage_rollup_refresh_task() == 0
    assert UsageHourly.objects.filter(device_id=device).count() == 3
    assert isinstance(usage_partitions_maintain_task()["created"], list)
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"marketplace.usage_rollup_refresh", "marketplace.usage_partitions_maintain"} <= scheduled
