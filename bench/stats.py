"""Pure numbers: latency summaries and CPU shares. No I/O, so the tests can pin them down."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def summarize_ms(seconds: Iterable[float]) -> dict[str, float]:
    """Latency summary in milliseconds of durations given in seconds; percentiles interpolate linearly
    between closest ranks (numpy's default). NaN when empty, so an empty level shows as missing rather
    than as a fake 0 ms."""
    ms = np.fromiter(seconds, dtype=float) * 1000.0
    if not ms.size:
        nan = math.nan
        return {"count": 0, "mean": nan, "p50": nan, "p95": nan, "p99": nan, "max": nan}
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
    return {
        "count": int(ms.size),
        "mean": float(ms.mean()),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": float(ms.max()),
    }


def cpu_share(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU time over wall time, in percent of one core."""
    return 100.0 * cpu_seconds / wall_seconds if wall_seconds > 0 else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and not math.isnan(denominator) else math.nan
