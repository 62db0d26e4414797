"""Usage samples: read each card's utilization, memory and power, turn them into samples per window,
buffer them, and send them in batches to POST /api/agent/usage/.

A sample covers one card over [window_start, window_end): each window starts where the previous one
ended, so windows never overlap and never leave gaps while the agent runs. busy_seconds is the
reading's utilization times the window's length - NVML and npu-smi report utilization over their own
short sampling period, so it is an estimate; the platform bills from the reservation's active
periods, never from samples.

Every sample gets its UUID when it is measured and keeps it until the server has answered: a batch
that failed (server down, timeout) is sent again with the same ids, and the server counts it once.
A batch the server refuses (HTTP 4xx: it would be refused again) is dropped and logged.
"""

import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nodeagent.client import AgentRefused, ServerUnavailable
from nodeagent.parsers import (
    NPU_SMI_ARGS,
    NVIDIA_SMI_USAGE_ARGS,
    Reading,
    parse_npu_smi_usage,
    parse_nvidia_smi_usage,
)

logger = logging.getLogger("nodeagent")

BATCH_SIZE = 500
# The server refuses longer windows; after a long pause (suspend, stopped process) the agent starts afresh.
MAX_WINDOW_SECONDS = 3600
# A day of samples of 8 cards at one a minute; beyond it the oldest are dropped (and logged).
MAX_BUFFERED_SAMPLES = 8 * 24 * 60


def read_nvml() -> dict[int, Reading] | None:
    """Readings through NVML, or None when NVML is not available."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        readings = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle).used // (1024 * 1024)
            except pynvml.NVMLError as error:
                logger.debug("NVML cannot read card %d: %s", index, error)
                continue
            try:
                power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000  # milliwatts
            except pynvml.NVMLError:
                power = 0.0  # no power sensor on this card
            readings[index] = Reading(index, float(utilization), int(memory), float(power))
        return readings
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def read_usage() -> dict[int, Reading]:
    """Readings of this machine's cards by index: NVML, else nvidia-smi, else npu-smi; {} if none answers."""
    from nodeagent.detect import _run

    readings = read_nvml()
    if readings:
        return readings
    output = _run(NVIDIA_SMI_USAGE_ARGS)
    if output:
        readings = parse_nvidia_smi_usage(output)
        if readings:
            return readings
    output = _run(NPU_SMI_ARGS)
    return parse_npu_smi_usage(output) if output else {}


class SimulatedUsage:
    """Plausible readings for --simulate: each card drifts between idle and busy, memory and power follow.

    With `busy` (a callable giving the card indices a running workload holds, as the agent's simulated
    runtime knows them) the cards follow the bookings: busy cards work hard, the others sit idle.
    """

    def __init__(
        self,
        count: int,
        *,
        seed: int | None = None,
        memory_mib: int = 80 * 1024,
        busy: Callable[[], set[int]] | None = None,
    ):
        self.random = random.Random(seed)
        self.memory_mib = memory_mib
        self.busy = busy
        self.utilization = [self.random.choice([0.0, 35.0, 90.0]) for _ in range(count)]

    def _next(self, index: int, current: float, busy: set[int] | None) -> float:
        if busy is None:
            return min(100.0, max(0.0, current + self.random.gauss(0, 12)))
        if index in busy:
            return min(100.0, max(60.0, current + 0.5 * (88.0 - current) + self.random.gauss(0, 6)))
        return min(5.0, max(0.0, self.random.uniform(0.0, 2.0)))

    def __call__(self) -> dict[int, Reading]:
        readings = {}
        busy = set(self.busy()) if self.busy is not None else None
        for index, current in enumerate(self.utilization):
            value = self._next(index, current, busy)
            self.utilization[index] = value
            memory = int(self.memory_mib * (0.05 + 0.85 * value / 100))
            power = round(80 + 6.2 * value + self.random.uniform(-5, 5), 1)
            readings[index] = Reading(index, round(value, 1), memory, max(0.0, power))
        return readings


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class UsageMeter:
    """Turns readings into samples per window, buffers them, and sends them in batches."""

    def __init__(
        self,
        *,
        read: Callable[[], dict[int, Reading]],
        interval: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_buffered: int = MAX_BUFFERED_SAMPLES,
    ):
        self.read = read
        self.interval = interval
        self.clock = clock
        self.buffer: deque[dict] = deque()
        self.max_buffered = max_buffered
        self.device_ids: dict[int, int] = {}  # card index -> the platform's device id
        self.window_start: datetime | None = None

    def set_devices(self, devices: list[dict] | None) -> None:
        """The register answer's devices: [{"id", "index"}]. Samples are sent by device id."""
        self.device_ids = {device["index"]: device["id"] for device in devices or []}

    def measure(self) -> int:
        """Close the current window if it is at least `interval` long: one sample per card. Returns how many."""
        now = self.clock()
        if self.window_start is None or now <= self.window_start:
            self.window_start = now
            return 0
        if (now - self.window_start).total_seconds() < self.interval:
            return 0
        start = max(self.window_start, now - timedelta(seconds=MAX_WINDOW_SECONDS))
        length = (now - start).total_seconds()
        self.window_start = now
        made = 0
        for index, reading in sorted(self.read().items()):
            device_id = self.device_ids.get(index)
            if device_id is None:
                continue  # a card the platform does not list (kept off the market by the provider)
            self.buffer.append(
                {
                    "sample_id": str(uuid.uuid4()),
                    "device": device_id,
                    "window_start": _iso(start),
                    "window_end": _iso(now),
                    "busy_seconds": round(length * reading.utilization_percent / 100, 3),
                    "utilization_percent": reading.utilization_percent,
                    "memory_used_mib": reading.memory_used_mib,
                    "power_watts": reading.power_watts,
                }
            )
            made += 1
        overflow = len(self.buffer) - self.max_buffered
        if overflow > 0:
            for _ in range(overflow):
                self.buffer.popleft()
            logger.warning("usage buffer full: dropped the %d oldest samples", overflow)
        return made

    def flush(self, client) -> dict:
        """Send the buffer in batches of BATCH_SIZE, oldest first. Stops at the first batch the
        server cannot take now (kept, with the same ids, for the next flush)."""
        totals = {"sent": 0, "new": 0, "duplicates": 0, "dropped": 0}
        while self.buffer:
            batch = [self.buffer[i] for i in range(min(BATCH_SIZE, len(self.buffer)))]
            try:
                answer = client.usage(batch)
            except ServerUnavailable as error:
                logger.warning("usage: %s; %d sample(s) kept for the next attempt", error, len(self.buffer))
                break
            except AgentRefused as error:
                if error.status_code in (401, 403):
                    raise
                logger.error("usage: the server refused a batch of %d sample(s), dropping it: %s", len(batch), error)
                totals["dropped"] += len(batch)
            else:
                totals["sent"] += len(batch)
                totals["new"] += answer.get("new", 0)
                totals["duplicates"] += answer.get("duplicates", 0)
            for _ in batch:
                self.buffer.popleft()
        return totals
