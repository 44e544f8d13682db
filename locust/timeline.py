"""Per-second client-side results over a test, for timelines and faults: requests, failures and a
response-time histogram for each wall-clock second, merged exactly across workers.

Per second also: the failed requests' own histogram (so a window's throughput and percentiles can be of
the successful requests alone: a refused connection answered in 0.1 ms is no throughput), the first and
last failure's time (an outage to the millisecond, not to the second), the requests *started* in it (by
their start time) and those in flight across the whole of it (started before, finished after). A second
where nothing started or finished while users ran is a stalled generator or a service that held every
request; `spanned` tells the two apart (lab.timeline).

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
        self.failed = StageHistogram()  # the failed ones' alone
        self.first_failure: float | None = None  # unix time a failed request ended
        self.last_failure: float | None = None
        self.started = 0  # requests that started in this second (counted when they end)
        self.spanned = 0  # requests in flight across the whole second

    def fail_at(self, first: float, last: float) -> None:
        self.first_failure = first if self.first_failure is None else min(self.first_failure, first)
        self.last_failure = last if self.last_failure is None else max(self.last_failure, last)

    def to_wire(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            **self.times.to_wire(),
            "failed": self.failed.to_wire(),
            "first_failure": self.first_failure,
            "last_failure": self.last_failure,
            "started": self.started,
            "spanned": self.spanned,
        }


class Timeline:
    """A `Tally` (tally.py); `lab` reads GET /timeline during a measurement, so no file at exit."""

    key: ClassVar[str] = REPORT_KEY
    route: ClassVar[str] = "/timeline"
    file_option: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._seconds: dict[int, _Second] = {}

    def _second(self, t: int) -> _Second:
        second = self._seconds.get(t)
        if second is None:
            second = self._seconds[t] = _Second()
            if len(self._seconds) > MAX_SECONDS:
                del self._seconds[min(self._seconds)]
        return second

    def add(self, t: float, response_time_ms: float, failed: bool, start_time: float | None = None) -> None:
        """A request that ended at `t` (unix s); `start_time` when it started (Locust's request event)."""
        second = self._second(int(t))
        ms = max(0.0, response_time_ms)
        second.times.add(ms)
        if failed:
            second.failures += 1
            second.failed.add(ms)
            second.fail_at(t, t)
        if start_time is not None and start_time <= t:
            self._second(int(start_time)).started += 1
            for inside in range(int(start_time) + 1, int(t)):
                self._second(inside).spanned += 1

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
                # Absent from an older worker's report: those seconds read as before.
                failed = StageHistogram.from_wire(wire.get("failed") or {})
                started, spanned = int(wire.get("started") or 0), int(wire.get("spanned") or 0)
                first, last = wire.get("first_failure"), wire.get("last_failure")
                window = (float(first), float(last)) if first is not None and last is not None else None
            except (TypeError, ValueError, AttributeError):
                continue
            if hist is None or failures < 0 or failures > hist.count or min(started, spanned) < 0:
                continue
            if failed is None or failed.count > failures:
                continue
            second = self._seconds.setdefault(t, _Second())
            second.times.merge(hist)
            second.failed.merge(failed)
            second.failures += failures
            second.started += started
            second.spanned += spanned
            if window is not None:
                second.fail_at(*window)

    def reset(self) -> None:
        self._seconds.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"seconds": self.rows()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per second, in order: `t` (unix seconds), requests (ended in it), failures, buckets
        ([ms, n] pairs, every request), failed_buckets (the failed ones), first/last_failure (unix s),
        started (requests that started in it), spanned (in flight across all of it)."""
        return [
            {
                "t": t,
                "requests": s.times.count,
                "failures": s.failures,
                "sum_ms": round(s.times.sum_ms, 3),
                "buckets": sorted([v, n] for v, n in s.times.counts.items()),
                "failed_buckets": sorted([v, n] for v, n in s.failed.counts.items()),
                "first_failure": _ms(s.first_failure),
                "last_failure": _ms(s.last_failure),
                "started": s.started,
                "spanned": s.spanned,
            }
            for t, s in sorted(self._seconds.items())
        ]


def _ms(t: float | None) -> float | None:
    return None if t is None else round(t, 3)
