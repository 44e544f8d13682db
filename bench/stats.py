"""Pure numbers: percentiles, latency summaries, CPU shares. No I/O, so the tests can pin them down."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    NaN for no values, so an empty level shows as missing rather than as a fake 0 ms.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_ms(seconds: Iterable[float]) -> dict[str, float]:
    """Latency summary in milliseconds of durations given in seconds."""
    ms = sorted(s * 1000.0 for s in seconds)
    if not ms:
        nan = math.nan
        return {"count": 0, "mean": nan, "p50": nan, "p95": nan, "p99": nan, "max": nan}
    return {
        "count": len(ms),
        "mean": sum(ms) / len(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": ms[-1],
    }


def cpu_share(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU time over wall time, in percent of one core."""
    return 100.0 * cpu_seconds / wall_seconds if wall_seconds > 0 else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and not math.isnan(denominator) else math.nan


def core_busy_percent(before: Sequence[int], after: Sequence[int]) -> float:
    """Busy share of one CPU between two /proc/stat rows (user nice system idle iowait irq softirq steal...).

    Idle and iowait count as not busy; everything else (including steal, time the hypervisor gave to
    another guest) counts as busy, because it was time our processes could not use.
    """
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    if total <= 0:
        return math.nan
    idle = deltas[3] + (deltas[4] if len(deltas) > 4 else 0)
    return 100.0 * (total - idle) / total
