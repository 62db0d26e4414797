"""The agent's usage samples: readings parsed from the vendor tools, contiguous windows, and a buffer
that resends a failed batch with the same sample ids."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nodeagent.client import AgentRefused, ServerUnavailable
from nodeagent.parsers import Reading, parse_npu_smi_usage, parse_nvidia_smi_usage
from nodeagent.usage import BATCH_SIZE, MAX_WINDOW_SECONDS, SimulatedUsage, UsageMeter

SAMPLES = Path(__file__).parent / "samples"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_nvidia_smi_readings_skip_unreadable_cards_and_default_a_missing_power_sensor_to_zero():
    readings = parse_nvidia_smi_usage((SAMPLES / "nvidia_smi_usage_8x_h100.csv").read_text())
    assert sorted(readings) == [0, 1, 2, 3, 6, 7]  # 4 fell off the bus, 5 reads only errors
    assert readings[0] == Reading(0, 97.0, 71234, 612.45)
    assert readings[3] == Reading(3, 45.0, 38211, 0.0)


def test_npu_smi_readings_take_ai_core_utilization_hbm_in_use_and_power():
    readings = parse_npu_smi_usage((SAMPLES / "npu_smi_info_8x_910b3.txt").read_text())
    assert sorted(readings) == list(range(8))
    assert readings[0] == Reading(0, 37.0, 61520, 102.8)
    assert readings[7] == Reading(7, 0.0, 3338, 105.1)


def test_npu_smi_readings_leave_out_a_card_in_critical_health():
    readings = parse_npu_smi_usage((SAMPLES / "npu_smi_info_910b3_critical.txt").read_text())
    assert 3 not in readings and len(readings) == 7


class Clock:
    def __init__(self, start=T0):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


def meter_for(count=2, interval=60, clock=None, **kwargs):
    meter = UsageMeter(read=SimulatedUsage(count, seed=1), interval=interval, clock=clock or Clock(), **kwargs)
    meter.set_devices([{"id": 100 + i, "index": i} for i in range(count)])
    return meter


def test_windows_follow_each_other_without_gaps_or_overlaps_one_sample_per_card():
    clock = Clock()
    meter = meter_for(clock=clock)
    assert meter.measure() == 0  # opens the first window
    for seconds in (30, 30, 65, 60):
        clock.advance(seconds)
        meter.measure()
    windows = [(s["device"], s["window_start"], s["window_end"]) for s in meter.buffer]
    assert windows == [
        (100, "2026-12-01T10:00:00Z", "2026-12-01T10:01:00Z"),
        (101, "2026-12-01T10:00:00Z", "2026-12-01T10:01:00Z"),
        (100, "2026-12-01T10:01:00Z", "2026-12-01T10:02:05Z"),
        (101, "2026-12-01T10:01:00Z", "2026-12-01T10:02:05Z"),
        (100, "2026-12-01T10:02:05Z", "2026-12-01T10:03:05Z"),
        (101, "2026-12-01T10:02:05Z", "2026-12-01T10:03:05Z"),
    ]
    for s in meter.buffer:
        length = (datetime.fromisoformat(s["window_end"]) - datetime.fromisoformat(s["window_start"])).total_seconds()
        assert 0 <= s["busy_seconds"] <= length
        assert 0 <= s["utilization_percent"] <= 100
    assert len({s["sample_id"] for s in meter.buffer}) == 6


def test_after_a_long_pause_a_window_is_cut_to_the_longest_the_server_accepts():
    clock = Clock()
    meter = meter_for(count=1, clock=clock)
    meter.measure()
    clock.advance(5 * 3600)
    meter.measure()
    (only,) = meter.buffer
    start, end = (datetime.fromisoformat(only[k]) for k in ("window_start", "window_end"))
    assert (end - start).total_seconds() == MAX_WINDOW_SECONDS


def test_cards_the_platform_does_not_list_are_not_reported():
    meter = meter_for(count=4)
    meter.set_devices([{"id": 7, "index": 2}])
    meter.measure()
    meter.clock.advance(60)
    meter.measure()
    assert [s["device"] for s in meter.buffer] == [7]


class FlakyServer:
    """Answers like the usage endpoint; fails the calls listed in `failures` (by call number)."""

    def __init__(self, failures=None):
        self.failures = failures or {}
        self.calls = []
        self.stored = {}

    def usage(self, samples):
        self.calls.append([s["sample_id"] for s in samples])
        failure = self.failures.get(len(self.calls))
        if failure is not None:
            raise failure
        new = sum(1 for s in samples if self.stored.setdefault((s["device"], s["window_start"]), s) is s)
        return {"received": len(samples), "new": new, "duplicates": len(samples) - new}


def filled_meter(windows: int, count: int = 8) -> UsageMeter:
    meter = meter_for(count=count)
    meter.measure()
    for _ in range(windows):
        meter.clock.advance(60)
        meter.measure()
    return meter


def test_a_batch_that_failed_is_sent_again_with_the_same_ids():
    # Given 1,200 buffered samples (three batches), and a server down for the second batch
    meter = filled_meter(150)
    server = FlakyServer(failures={2: ServerUnavailable("HTTP 503")})

    # When the agent flushes, and flushes again later
    first = meter.flush(server)
    assert first["sent"] == BATCH_SIZE and len(meter.buffer) == 1200 - BATCH_SIZE
    second = meter.flush(server)

    # Then the failed batch went again with the same ids, and every sample was stored once
    assert server.calls[2] == server.calls[1]
    assert second["sent"] == 1200 - BATCH_SIZE and not meter.buffer
    assert len(server.stored) == 1200


def test_a_batch_the_server_refuses_is_dropped_so_it_cannot_block_the_rest():
    meter = filled_meter(100)  # 800 samples: two batches
    server = FlakyServer(failures={1: AgentRefused(400, "invalid", "samples[3].window_start: too old")})
    totals = meter.flush(server)
    assert totals == {"sent": 300, "new": 300, "duplicates": 0, "dropped": 500}
    assert not meter.buffer


def test_a_refused_key_stops_the_agent_and_keeps_the_samples():
    meter = filled_meter(1)
    with pytest.raises(AgentRefused):
        meter.flush(FlakyServer(failures={1: AgentRefused(401, "authentication_failed", "Invalid or revoked agent key.")}))
    assert len(meter.buffer) == 8


def test_the_buffer_keeps_the_newest_samples_when_full():
    meter = meter_for(count=2, max_buffered=4)
    meter.measure()
    for _ in range(3):
        meter.clock.advance(60)
        meter.measure()
    assert len(meter.buffer) == 4
    assert meter.buffer[0]["window_start"] == "2026-12-01T10:01:00Z"
