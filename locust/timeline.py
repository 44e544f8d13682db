"""Per-second client-side results over a test, for timelines and faults: requests, failures and a
response-time histogram for each wall-clock second, merged exactly across workers.

Locust's own history (`--csv-full-history`) has the request counts per second but only rolling 10-second
percentiles, too coarse to see a failover. Here each second keeps its histogram (`stagestats`' buckets),
so any window's percentiles can be rebuilt exactly from the raw file. Workers hand over the seconds they
touched since their last report; the master merges. No Locust import (tests load it directly).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stagestats import StageHistogram

REPORT_KEY = "timeline"  # key of the deltas in the worker -> master stats report
# A soak of hours at one row per second stays small (a row is tens of buckets); past this the oldest go.
MAX_SECONDS = 6 * 3600


class _Second:
    def __init__(self) -> None:
        self.failures = 0
        self.times = StageHistogram()  # every request's response time, failed ones too

    def to_wire(self) -> dict[str, Any]:
        return {"failures": self.failures, **self.times.to_wire()}


class Timeline:
    """A `Tally` (tally.py); `lab` reads GET /timeline during a measurement, so no file at exit."""

    key: ClassVar[str] = REPORT_KEY
    route: ClassVar[str] = "/timeline"
    file_option: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._seconds: dict[int, _Second] = {}

    def add(self, t: float, response_time_ms: float, failed: bool) -> None:
        second = self._seconds.get(int(t))
        if second is None:
            second = self._seconds[int(t)] = _Second()
            if len(self._seconds) > MAX_SECONDS:
                del self._seconds[min(self._seconds)]
        second.times.add(max(0.0, response_time_ms))
        second.failures += bool(failed)

    def drain(self) -> dict[str, dict[str, Any]]:
        # String keys: the report crosses msgpack and JSON unchanged.
        delta = {str(t): s.to_wire() for t, s in self._seconds.items()}
        self._seconds.clear()
        return delta

    def merge(self, delta: Any) -> None:
        """Add a worker's delta; a missing or malformed report is ignored."""
        if not isinstance(delta, Mapping):
            return
        for key, wire in delta.items():
            hist = StageHistogram.from_wire(wire)
            try:
                t, failures = int(key), int(wire.get("failures") or 0)
            except (TypeError, ValueError, AttributeError):
                continue
            if hist is None or failures < 0 or failures > hist.count:
                continue
            second = self._seconds.setdefault(t, _Second())
            second.times.merge(hist)
            second.failures += failures

    def reset(self) -> None:
        self._seconds.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"seconds": self.rows()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per second, in order: `t` (unix seconds), requests, failures, buckets ([ms, n] pairs)."""
        return [
            {
                "t": t,
                "requests": s.times.count,
                "failures": s.failures,
                "sum_ms": round(s.times.sum_ms, 3),
                "buckets": sorted([v, n] for v, n in s.times.counts.items()),
            }
            for t, s in sorted(self._seconds.items())
        ]
