"""Property: however a set of usage samples is split into batches, replayed, re-measured under new
ids and interleaved with rollups, every window is stored once, the answers count each once as new,
and the hourly rollup equals a direct recomputation from the unique samples."""

import uuid
from collections import defaultdict
from datetime import UTC, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory.agent_services import node_agent_token_create
from marketplace.metering.services import usage_rollup_refresh
from marketplace.models import UsageHourly, UsageSample
from tests.factories import NodeFactory
from tests.marketplace.metering_helpers import post_usage, sample

CARDS = 3
# Windows over three hours and a bit, so batches touch several hours, some of them again later.
MINUTES = 200


@pytest.fixture
def agent(catalog):
    node = NodeFactory(card_count=CARDS)
    key = node_agent_token_create(node=node)[1]
    devices = list(node.devices.order_by("index").values_list("id", flat=True))
    # Whole hours in the past, so every window is well before now
    base = timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    return key, devices, base


windows = st.lists(
    st.tuples(
        st.integers(0, CARDS - 1),
        st.integers(0, MINUTES - 1),
        st.integers(0, 10_000).map(lambda hundredths: hundredths / 100),  # utilization, as agents report it
        st.integers(0, 80_000),
        st.integers(0, 100_000).map(lambda hundredths: hundredths / 100),  # power
        st.booleans(),  # re-measured later under a new id, with other figures
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda w: (w[0], w[1]),
)


@st.composite
def scenarios(draw):
    chosen = draw(windows)
    # Each window is sent as its original (2i) or, when it has one, as its re-measured twin (2i + 1).
    senders = [2 * i for i in range(len(chosen))] + [2 * i + 1 for i, w in enumerate(chosen) if w[5]]
    batches = draw(st.lists(st.lists(st.sampled_from(senders), min_size=1, max_size=12), min_size=1, max_size=8))
    rest = draw(st.permutations(senders))  # a final batch sends everything once more, in any order
    batches.append(rest)
    rollup_after = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    return chosen, batches, rollup_after


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_batches_split_replayed_and_remeasured_store_each_window_once_and_roll_up_exactly(agent, scenario):
    key, devices, base = agent
    chosen, batches, rollup_after = scenario
    bodies = {}
    for i, (card, offset, utilization, memory, power, _twin) in enumerate(chosen):
        start = base + timedelta(minutes=offset)
        bodies[2 * i] = sample(devices[card], start, utilization=utilization, memory_used_mib=memory, power_watts=power)
        bodies[2 * i + 1] = sample(
            devices[card], start, utilization=100 - utilization, memory_used_mib=memory // 2, power_watts=power / 2
        )
        bodies[2 * i + 1]["sample_id"] = str(uuid.uuid4())

    savepoint = transaction.savepoint()
    try:
        # When every batch is sent, in order, with rollups in between
        new_total = duplicate_total = 0
        first_sent = {}  # window -> the body stored: whichever was sent first
        for batch, rollup in zip(batches, rollup_after, strict=True):
            response = post_usage(key, [bodies[j] for j in batch])
            assert response.status_code == 200, response.json()
            answer = response.json()
            new_total += answer["new"]
            duplicate_total += answer["duplicates"]
            for j in batch:
                first_sent.setdefault((bodies[j]["device"], bodies[j]["window_start"]), bodies[j])
            if rollup:
                usage_rollup_refresh()
        while usage_rollup_refresh():
            pass

        # Then each window was new exactly once, and the stored samples are the first ones sent
        sent = sum(len(batch) for batch in batches)
        assert new_total == len(chosen) == len(first_sent)
        assert duplicate_total == sent - len(chosen)
        stored = {(row.device_id, row.sample_id) for row in UsageSample.objects.all()}
        assert stored == {(body["device"], uuid.UUID(body["sample_id"])) for body in first_sent.values()}

        # And the rollup equals a recomputation from those samples
        expected = defaultdict(list)
        for body in first_sent.values():
            start = base + timedelta(minutes=chosen_offset(body, base))
            expected[(start.replace(minute=0), body["device"])].append(body)
        rollup = {(row.hour, row.device_id): row for row in UsageHourly.objects.all()}
        assert set(rollup) == set(expected)
        for group, bodies_in_hour in expected.items():
            row = rollup[group]
            assert row.reservation_id is None
            assert row.samples == len(bodies_in_hour)
            assert row.busy_seconds == pytest.approx(sum(b["busy_seconds"] for b in bodies_in_hour))
            assert row.utilization_mean == pytest.approx(
                sum(b["utilization_percent"] for b in bodies_in_hour) / len(bodies_in_hour)
            )
            assert row.memory_max_mib == max(b["memory_used_mib"] for b in bodies_in_hour)
            assert row.energy_wh == pytest.approx(sum(b["power_watts"] * 60 / 3600 for b in bodies_in_hour))
    finally:
        transaction.savepoint_rollback(savepoint)


def chosen_offset(body: dict, base) -> int:
    from datetime import datetime

    start = datetime.fromisoformat(body["window_start"])
    return int((start - base).total_seconds() // 60)
