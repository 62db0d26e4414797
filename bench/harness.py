"""Timing helpers for bench/: every figure is printed with its ratio to a baseline measured in the
same run on the same data, so a slow machine shows as a slow baseline, not as a failed target."""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

# Every figure printed in this run, as bench/results.json records it (python -m bench writes the file):
# {"name", "value", "unit", "baseline", "ratio", "target", "met"}.
RESULTS: list[dict] = []
# The command line of `python -m bench` (benchmarks read their own options from it).
OPTIONS: dict = {}


def record(name: str, value: float, unit: str, *, baseline: float | None = None, ratio: float | None = None,
           target: float | None = None, met: bool | None = None) -> dict:
    """Add one figure to RESULTS. `met` is None when the figure has no target."""
    result = {"name": name, "value": round(value, 3), "unit": unit,
              "baseline": None if baseline is None else round(baseline, 3),
              "ratio": None if ratio is None else round(ratio, 3),
              "target": target, "met": met}
    RESULTS.append(result)
    return result


@dataclass
class Figure:
    name: str
    p50_ms: float
    p95_ms: float
    runs: int
    baseline: "Figure | None" = None
    target_ms: float | None = None
    note: str = ""

    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline.p95_ms == 0:
            return None
        return self.p95_ms / self.baseline.p95_ms

    def line(self) -> str:
        ratio = self.ratio()
        parts = [f"{self.name:<52} p50 {self.p50_ms:8.2f} ms  p95 {self.p95_ms:8.2f} ms  (n={self.runs})"]
        if ratio is not None:
            parts.append(f"  x{ratio:6.1f} of '{self.baseline.name}'")
        if self.target_ms is not None:
            verdict = "meets" if self.p95_ms <= self.target_ms else "MISSES"
            parts.append(f"  target p95 <= {self.target_ms:.0f} ms: {verdict}")
        if self.note:
            parts.append(f"  [{self.note}]")
        return "".join(parts)


def measure(name: str, fn: Callable[[], object], *, runs: int = 30, warmup: int = 3, baseline: Figure | None = None,
            target_ms: float | None = None, note: str = "") -> Figure:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, max(0, round(0.95 * len(samples)) - 1))]
    figure = Figure(name, statistics.median(samples), p95, runs, baseline, target_ms, note)
    print(figure.line(), flush=True)
    record(name, figure.p95_ms, "ms (p95)", baseline=baseline.p95_ms if baseline else None, ratio=figure.ratio(),
           target=target_ms, met=None if target_ms is None else figure.p95_ms <= target_ms)
    return figure


@dataclass
class Rate:
    """A throughput figure (operations per second), with its ratio to a same-run baseline rate."""

    name: str
    per_second: float
    operations: int
    seconds: float
    baseline: "Rate | None" = None
    target_per_second: float | None = None
    note: str = ""

    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline.per_second == 0:
            return None
        return self.per_second / self.baseline.per_second

    def line(self) -> str:
        parts = [f"{self.name:<52} {self.per_second:8.1f} /s  ({self.operations} in {self.seconds:.2f} s)"]
        ratio = self.ratio()
        if ratio is not None:
            parts.append(f"  x{ratio:6.2f} of '{self.baseline.name}'")
        if self.target_per_second is not None:
            verdict = "meets" if self.per_second >= self.target_per_second else "MISSES"
            parts.append(f"  target >= {self.target_per_second:.0f}/s: {verdict}")
        if self.note:
            parts.append(f"  [{self.note}]")
        return "".join(parts)


def rate(name: str, operations: int, seconds: float, *, baseline: Rate | None = None,
         target_per_second: float | None = None, note: str = "") -> Rate:
    figure = Rate(name, operations / seconds if seconds else 0.0, operations, seconds, baseline, target_per_second, note)
    print(figure.line(), flush=True)
    record(name, figure.per_second, "per second", baseline=baseline.per_second if baseline else None,
           ratio=figure.ratio(), target=target_per_second,
           met=None if target_per_second is None else figure.per_second >= target_per_second)
    return figure
