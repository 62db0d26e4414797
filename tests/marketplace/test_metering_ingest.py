"""Usage samples through the agent API: idempotent ingestion, and whole-batch refusal of bad input."""

import json
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from inventory import agent_services
from inventory.agent_services import node_agent_token_create, node_agent_token_revoke
from inventory.models import NodeAgentToken
from marketplace.metering.services import MAX_BATCH_SAMPLES, UsageBatchInvalid, usage_samples_ingest
from marketplace.models import UsageRollupDirty, UsageSample
from tests.factories import NodeFactory
from tests.marketplace.metering_helpers import agent_api, book, minute, post_usage, sample


@pytest.fixture
def node(catalog):
    return NodeFactory(card_count=4)


@pytest.fixture
def key(node):
    return node_agent_token_create(node=node)[1]


HEARTBEAT = reverse("api:agent-heartbeat")


def devices(node) -> list[int]:
    return list(node.devices.order_by("index").values_list("id", flat=True))


def stored() -> set[tuple[int, str]]:
    return {(row.device_id, str(row.sample_id)) for row in UsageSample.objects.all()}


# --- idempotency -------------------------------------------------------------------------------


def test_a_batch_is_stored_and_the_answer_counts_new_and_duplicate_samples(node, key):
    # Given three samples of two devices
    now = timezone.now()
    first, second = devices(node)[:2]
    batch = [sample(first, minute(now, 3)), sample(first, minute(now, 2)), sample(second, minute(now, 2))]

    # When the agent sends them
    response = post_usage(key, batch)

    # Then all three are new and stored with the node and no reservation (the cards are idle)
    assert response.status_code == 200, response.json()
    assert response.json() == {"received": 3, "new": 3, "duplicates": 0}
    assert stored() == {(s["device"], s["sample_id"]) for s in batch}
    assert set(UsageSample.objects.values_list("node_id", "reservation_id").distinct()) == {(node.pk, None)}


def test_a_repeated_batch_changes_nothing_and_is_counted_as_duplicates(node, key):
    # Given a batch already stored
    now = timezone.now()
    batch = [sample(device, minute(now, 5)) for device in devices(node)]
    post_usage(key, batch)
    before = list(UsageSample.objects.order_by("device_id").values())

    # When the agent retries it (the same ids)
    response = post_usage(key, batch)

    # Then nothing is new and nothing changed
    assert response.json() == {"received": 4, "new": 0, "duplicates": 4}
    assert list(UsageSample.objects.order_by("device_id").values()) == before


def test_an_overlapping_batch_stores_only_the_samples_not_seen_before(node, key):
    now = timezone.now()
    device = devices(node)[0]
    old = [sample(device, minute(now, m)) for m in (10, 9, 8)]
    post_usage(key, old)

    # When the next batch repeats two of them and adds two new ones, out of order
    new = [sample(device, minute(now, m)) for m in (6, 7)]
    response = post_usage(key, [new[0], old[2], new[1], old[1]])

    # Then only the new ones count
    assert response.json() == {"received": 4, "new": 2, "duplicates": 2}
    assert UsageSample.objects.count() == 5


def test_a_window_measured_again_under_a_new_id_is_a_duplicate(node, key):
    # Given a stored sample; the agent restarts, loses its buffer and measures that window again
    now = timezone.now()
    device = devices(node)[0]
    original = sample(device, minute(now, 4), utilization=30.0)
    post_usage(key, [original])
    remeasured = sample(device, minute(now, 4), utilization=90.0)  # a fresh uuid

    # When it sends the new measurement
    response = post_usage(key, [remeasured])

    # Then the window is not counted twice: the first sample stays
    assert response.json() == {"received": 1, "new": 0, "duplicates": 1}
    assert stored() == {(device, original["sample_id"])}


def test_new_samples_mark_their_hours_for_the_rollup_and_duplicates_do_not(node, key):
    now = timezone.now().replace(minute=30)
    device = devices(node)[0]
    batch = [sample(device, minute(now, 0) - timedelta(hours=2)), sample(device, minute(now, 0) - timedelta(hours=1))]
    post_usage(key, batch)
    marks = set(UsageRollupDirty.objects.values_list("device_id", "hour"))
    assert {hour.minute for _, hour in marks} == {0}
    assert len(marks) == 2

    UsageRollupDirty.objects.all().delete()
    post_usage(key, batch)
    assert not UsageRollupDirty.objects.exists()


# --- refusals: nothing of the batch is stored --------------------------------------------------


def test_samples_for_another_nodes_devices_are_refused_and_nothing_is_stored(node, key, catalog):
    # Given another provider's node
    other_node = NodeFactory(card_count=2)
    now = timezone.now()
    mine = sample(devices(node)[0], minute(now, 2))
    theirs = sample(devices(other_node)[0], minute(now, 2))

    # When this node's agent reports a card of the other node beside one of its own
    response = post_usage(key, [mine, theirs])

    # Then the whole batch is refused in the API's error shape, naming the sample
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {"samples[1].device": [f"Device {theirs['device']} is not a device of this node."]}
    assert "Nothing was stored" in error["message"]
    assert UsageSample.objects.count() == 0
    assert not UsageRollupDirty.objects.exists()


def test_a_window_in_the_future_is_refused_beyond_a_small_clock_skew(node, key):
    now = timezone.now()
    device = devices(node)[0]
    future = sample(device, now + timedelta(minutes=10))
    response = post_usage(key, [sample(device, minute(now, 3)), future])
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"samples[1].window_end": ["Is in the future (check the node's clock)."]}
    assert UsageSample.objects.count() == 0

    # A window ending a few seconds ahead of the server's clock (the agent's clock runs fast) is fine
    slightly_ahead = sample(device, now - timedelta(seconds=30))
    assert post_usage(key, [slightly_ahead]).json()["new"] == 1


MALFORMED = {
    "end before start": dict(window_end="2000-01-01T00:00:00Z"),
    "window too long": dict(seconds=3601, busy_seconds=10),
    "busy longer than the window": dict(busy_seconds=61),
    "utilization above 100": dict(utilization_percent=100.5),
    "negative utilization": dict(utilization_percent=-1),
    "utilization not a number": dict(utilization_percent="50"),
    "utilization NaN": dict(utilization_percent=float("nan")),
    "malformed id": dict(sample_id="not-a-uuid"),
    "id not a string": dict(sample_id=12345),
    "device not an integer": dict(device="1"),
    "device a boolean": dict(device=True),
    "time without zone": dict(window_start="2026-01-01T00:00:00"),
    "time not a time": dict(window_start="yesterday"),
    "negative memory": dict(memory_used_mib=-1),
    "fractional memory": dict(memory_used_mib=1.5),
    "absurd power": dict(power_watts=1e9),
    # Regression: a subnormal power was stored, then the rollup failed on it ("underflow")
    "power too small to be real": dict(power_watts=5e-324),
    "utilization too small to be real": dict(utilization_percent=1e-300, busy_seconds=0),
    "unknown field": dict(temperature=80),
    "id without hyphens": dict(sample_id="0b6f6c1e3f2a4c2b9a535d8e1c9f7a10"),
    "time in another format": dict(window_start="2026-12-01 10:00:00+00:00"),
    "time a list": dict(window_start=["2026-12-01T10:00:00Z"]),
    "time an object": dict(window_end={"at": "2026-12-01T10:01:00Z"}),
    "device beyond 64 bits": dict(device=2**70),
    "memory beyond 32 bits": dict(memory_used_mib=2**40),
    # Regression: before year 1 / after 9999 once converted to UTC overflowed into a 500
    "start before year 1 in UTC": dict(window_start="0001-01-01T00:00:00+01:00"),
    "end after 9999 in UTC": dict(window_end="9999-12-31T23:30:00-01:00"),
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_sample_refuses_the_whole_batch(node, key, change):
    now = timezone.now()
    device = devices(node)[0]
    good = sample(device, minute(now, 5))
    bad = sample(device, minute(now, 3), **{k: v for k, v in change.items() if k == "seconds"})
    bad.update({k: v for k, v in change.items() if k != "seconds"})

    response = post_usage(key, [good, bad])

    assert response.status_code == 400, response.json()
    fields = response.json()["error"]["fields"]
    assert fields and all(name.startswith("samples[1].") for name in fields)
    assert UsageSample.objects.count() == 0


def test_a_missing_field_is_named(node, key):
    bad = sample(devices(node)[0], minute(timezone.now(), 3))
    del bad["busy_seconds"]
    response = post_usage(key, [bad])
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"samples[0].busy_seconds": ["This field is required."]}


@pytest.mark.parametrize(
    "body",
    [{"samples": []}, {"samples": "x"}, {"samples": [1]}, {}, [], {"samples": [], "extra": 1}],
    ids=["empty", "not a list", "not objects", "no samples", "not an object", "extra key"],
)
def test_a_malformed_body_is_refused(key, body):
    from tests.marketplace.metering_helpers import USAGE, agent_api

    response = agent_api(key).post(USAGE, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_the_batch_is_read_from_the_body_text_whatever_its_spacing_or_key_escapes(node, key):
    # PostgreSQL reads the samples array out of the body's text (not a re-encoding of the parsed
    # samples): spacing, an escaped key and nested braces in the text must not change what is stored.
    from tests.marketplace.metering_helpers import USAGE, agent_api

    now = timezone.now()
    first, second = devices(node)[:2]
    batch = [sample(first, minute(now, 3)), sample(second, minute(now, 3))]
    array = json.dumps(batch, indent=2)
    for body in (f'\n {{ "\\u0073amples" :\n{array}\n}}\n ', f'{{"samples":{array}}}'):
        response = agent_api(key).generic("POST", USAGE, body, content_type="application/json")
        assert response.status_code == 200, response.json()
    assert stored() == {(s["device"], s["sample_id"]) for s in batch}
    assert UsageSample.objects.count() == 2  # the second body was all duplicates


def test_a_body_naming_samples_twice_is_refused_and_nothing_is_stored(node, key):
    # Python would keep the last "samples" and the database read another: refused instead, as a whole
    from tests.marketplace.metering_helpers import USAGE, agent_api

    now = timezone.now()
    first, second = devices(node)[:2]
    one, other = json.dumps([sample(first, minute(now, 3))]), json.dumps([sample(second, minute(now, 3))])
    response = agent_api(key).generic("POST", USAGE, f'{{"samples": {one}, "samples": {other}}}',
                                      content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert not UsageSample.objects.exists()


def test_a_body_that_is_not_json_is_refused(key):
    from tests.marketplace.metering_helpers import USAGE, agent_api

    response = agent_api(key).generic("POST", USAGE, b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["samples"]


def test_a_body_that_is_not_utf8_is_refused(key):
    from tests.marketplace.metering_helpers import USAGE, agent_api

    body = '{"samples": []}'.encode("utf-16")
    response = agent_api(key).generic("POST", USAGE, body, content_type="application/json")
    assert response.status_code == 400


def test_a_batch_over_the_maximum_size_is_refused(node, key):
    now = timezone.now()
    device = devices(node)[0]
    batch = [sample(device, minute(now, 1) - timedelta(seconds=i)) for i in range(MAX_BATCH_SAMPLES + 1)]
    response = post_usage(key, batch)
    assert response.status_code == 400
    assert f"At most {MAX_BATCH_SAMPLES} samples" in response.json()["error"]["message"]
    assert UsageSample.objects.count() == 0


def test_samples_older_than_the_retention_are_refused(node, key, settings):
    settings.USAGE_SAMPLE_RETENTION_DAYS = 2
    old = sample(devices(node)[0], minute(timezone.now(), 0) - timedelta(days=3))
    response = post_usage(key, [old])
    assert response.status_code == 400
    assert "retention" in response.json()["error"]["fields"]["samples[0].window_start"][0]


def test_without_a_valid_agent_key_nothing_is_accepted(node, key):
    batch = [sample(devices(node)[0], minute(timezone.now(), 2))]
    assert post_usage("cfa_" + "x" * 40, batch).status_code == 401
    token = node.agent_tokens.get()
    node_agent_token_revoke(token=token)
    response = post_usage(key, batch)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or revoked agent key."
    assert UsageSample.objects.count() == 0


def test_a_key_revoked_by_another_process_stops_working_for_usage_within_the_cache_time(node, key, monkeypatch):
    # Usage batches trust a per-process cache of the key for AGENT_KEY_CACHE_SECONDS. A revoke in
    # another process (another web worker) cannot reach this process's cache: the revoked_at is
    # written here by a plain UPDATE, bypassing the service, as that other process's would be.
    monkeypatch.setattr(agent_services, "AGENT_KEY_CACHE_SECONDS", 1.0)
    first = devices(node)[0]
    assert post_usage(key, [sample(first, minute(timezone.now(), 3))]).status_code == 200
    revoked_at = time.monotonic()
    NodeAgentToken.objects.filter(node=node).update(revoked_at=timezone.now())
    # The exact lookup of register/heartbeat refuses it at once.
    assert agent_api(key).post(HEARTBEAT, {}, format="json").status_code == 401
    within = post_usage(key, [sample(first, minute(timezone.now(), 2))])
    if time.monotonic() - revoked_at < 0.9:  # still inside the documented window (unless the machine stalled)
        assert within.status_code == 200
    time.sleep(max(0.0, revoked_at + 1.05 - time.monotonic()))
    response = post_usage(key, [sample(first, minute(timezone.now(), 1))])
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or revoked agent key."
    assert UsageSample.objects.count() == (2 if within.status_code == 200 else 1)


def test_a_key_revoked_through_the_service_stops_working_at_once_in_this_process(node, key):
    first = devices(node)[0]
    assert post_usage(key, [sample(first, minute(timezone.now(), 2))]).status_code == 200  # now cached
    node_agent_token_revoke(token=node.agent_tokens.get())
    assert post_usage(key, [sample(first, minute(timezone.now(), 1))]).status_code == 401
    assert UsageSample.objects.count() == 1


def test_a_cached_key_authenticates_as_its_own_node_only(node, key, catalog):
    other = NodeFactory(card_count=2)
    other_key = node_agent_token_create(node=other)[1]
    for _ in range(2):  # the second round comes from the cache
        assert post_usage(key, [sample(devices(node)[0], minute(timezone.now(), 2))]).status_code == 200
        refused = post_usage(other_key, [sample(devices(node)[1], minute(timezone.now(), 2))])
        assert refused.status_code == 400
    # A key that is not one (right prefix, wrong secret) is refused even while the real one is cached.
    assert post_usage(key[:12] + "x" * (len(key) - 12), [sample(devices(node)[0], minute(timezone.now(), 1))]).status_code == 401


def test_the_register_answer_lists_the_nodes_devices_by_id_and_index(node, key):
    from tests.marketplace.metering_helpers import agent_api

    report = {"model_name": node.accelerator_model.name, "card_count": 4}
    response = agent_api(key).post("/api/agent/register/", report, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["devices"] == [{"id": pk, "index": i} for i, pk in enumerate(devices(node))]


# --- attribution to reservations ---------------------------------------------------------------


def test_a_sample_belongs_to_the_reservation_whose_allocation_covers_its_window(small_offer, soon):
    # Given a reservation of 2 cards for [soon, soon + 2h)
    reservation = book(small_offer, cards=2, start=soon, end=soon + timedelta(hours=2))
    booked = list(reservation_device_ids(reservation))
    node_id = UsageSample._meta.get_field("node").related_model.objects.get(devices=booked[0]).pk
    idle = [d for d in node_devices(node_id) if d not in booked][0]
    later = soon + timedelta(hours=3)

    # When the node reports a window inside the reservation for a booked card, one straddling its
    # start (mostly before it), and one for an idle card
    result = usage_samples_ingest(
        node_id=node_id,
        samples=[
            sample(booked[0], soon + timedelta(minutes=10)),
            sample(booked[0], soon - timedelta(seconds=40)),
            sample(idle, soon + timedelta(minutes=10)),
        ],
        now=later,
    )

    # Then the sample inside belongs to the reservation, the others to no one
    assert result.new == 3
    owner = dict(UsageSample.objects.values_list("window_start", "reservation_id").filter(device_id=booked[0]))
    assert owner == {soon + timedelta(minutes=10): reservation.pk, soon - timedelta(seconds=40): None}
    assert UsageSample.objects.get(device_id=idle).reservation_id is None


def test_the_service_refuses_an_unknown_device_without_storing(node):
    with pytest.raises(UsageBatchInvalid):
        usage_samples_ingest(node_id=node.pk, samples=[sample(10**9, minute(timezone.now(), 2))])
    assert UsageSample.objects.count() == 0


def reservation_device_ids(reservation):
    from inventory.allocations import device_allocations_for_reservation

    return device_allocations_for_reservation(reservation_id=reservation.pk).values_list("device_id", flat=True)


def node_devices(node_id):
    from inventory.selectors import node_device_ids

    return sorted(node_device_ids(node_id=node_id))
