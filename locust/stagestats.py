"""The server-side time split (`Server-Timing` stages) per request name, merged exactly across workers.

Each stage keeps a histogram of durations rounded to 3 significant digits (0.0123 ms, 1.23 ms, 123 ms:
at most 0.5 % off, far below run-to-run noise) plus the exact sum. Histograms add, so the master's
percentiles are those of every worker's samples together, as Locust does with its own response-time
dicts; merging per-worker percentiles instead would be wrong by an unknown amount.

Workers hand over deltas with each stats report and the master merges them, like `servedby`. Kept free
of Locust imports so tests can use it without gevent monkey-patching their process.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

REPORT_KEY = "server_timing"  # key of the deltas in the worker -> master stats report
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
# Stages in the order a request passes them, `total` last; others sort after. A copy of the classifier's
# canonical list (services/classifier/classifier/timing.py STAGES), which this image cannot import;
# tests/locust/test_stage_list.py keeps the two equal.
STAGE_ORDER = ("fetch", "queue", "decode", "infer", "total")


def bucket(ms: float) -> float:
    """`ms` rounded to SIGNIFICANT_DIGITS significant digits (0 stays 0)."""
    if ms <= 0:
        return 0.0
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(ms))
    return round(ms, digits)


class StageHistogram:
    def __init__(self) -> None:
        self.counts: Counter[float] = Counter()
        self.count = 0
        self.sum_ms = 0.0

    def add(self, ms: float) -> None:
        self.counts[bucket(ms)] += 1
        self.count += 1
        self.sum_ms += ms

    def merge(self, other: StageHistogram) -> None:
        self.counts.update(other.counts)
        self.count += other.count
        self.sum_ms += other.sum_ms

    def percentile(self, q: float) -> float | None:
        """The smallest recorded value with at least a fraction q of the samples at or below it (the
        nearest-rank definition; numpy's `method="inverted_cdf"`)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count - 1e-9))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return value
        return max(self.counts)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "mean_ms": round(self.sum_ms / self.count, 4) if self.count else None,
        }
        out.update({key: self.percentile(q) for key, q in PERCENTILES.items()})
        return out

    def to_wire(self) -> dict[str, Any]:
        # Pairs, not a float-keyed map: msgpack and JSON both keep them as they are.
        return {"sum_ms": self.sum_ms, "buckets": [[v, n] for v, n in self.counts.items()]}

    @classmethod
    def from_wire(cls, data: Any) -> StageHistogram | None:
        """A histogram from a worker's report, or None if it is malformed (an older or foreign worker)."""
        if not isinstance(data, Mapping):
            return None
        hist = cls()
        try:
            for value, n in data.get("buckets") or []:
                value, n = float(value), int(n)
                if n <= 0 or not math.isfinite(value) or value < 0:
                    return None
                hist.counts[bucket(value)] += n
                hist.count += n
            hist.sum_ms = float(data.get("sum_ms") or 0.0)
        except (TypeError, ValueError):
            return None
        return hist


def _stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


class ServerTimingStats:
    """Histograms per request name and stage; a `Tally`: a worker `add`s and `drain`s, the master `merge`s."""

    key: ClassVar[str] = REPORT_KEY
    route: ClassVar[str] = "/server-timing"
    file_option: ClassVar[str | None] = "server_timing_file"

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, StageHistogram]] = {}

    def add(self, name: str, metrics: Iterable[tuple[str, float]]) -> None:
        stages = self._by_name.setdefault(name, {})
        for stage, ms in metrics:
            stages.setdefault(stage, StageHistogram()).add(ms)

    def merge(self, delta: Any) -> None:
        """Add a worker's delta; a missing or malformed report is ignored."""
        if not isinstance(delta, Mapping):
            return
        for name, stages in delta.items():
            if not isinstance(name, str) or not isinstance(stages, Mapping):
                continue
            for stage, wire in stages.items():
                hist = StageHistogram.from_wire(wire)
                if isinstance(stage, str) and hist is not None and hist.count:
                    self._by_name.setdefault(name, {}).setdefault(stage, StageHistogram()).merge(hist)

    def drain(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The histograms since the last drain, in wire form, and start again from empty."""
        delta = {
            name: {stage: hist.to_wire() for stage, hist in stages.items()}
            for name, stages in self._by_name.items()
        }
        self._by_name.clear()
        return delta

    def reset(self) -> None:
        self._by_name.clear()

    def histograms(self) -> dict[str, dict[str, StageHistogram]]:
        """The histograms by request name and stage (read-only: the master's /metrics renders them)."""
        return self._by_name

    def snapshot(self) -> dict[str, Any]:
        """`{"stages": {stage: summary}, "by_name": {name: {stage: summary}}}`; `stages` merges all names."""
        overall: dict[str, StageHistogram] = {}
        by_name: dict[str, dict[str, Any]] = {}
        for name in sorted(self._by_name):
            stages = self._by_name[name]
            by_name[name] = {s: stages[s].summary() for s in sorted(stages, key=_stage_key)}
            for stage, hist in stages.items():
                overall.setdefault(stage, StageHistogram()).merge(hist)
        return {
            "stages": {s: overall[s].summary() for s in sorted(overall, key=_stage_key)},
            "by_name": by_name,
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per (request name, stage), all names first, for the web UI's table."""
        snap = self.snapshot()
        groups = [("All requests", snap["stages"]), *snap["by_name"].items()]
        return [
            {
                "name": name,
                "stage": stage,
                "count": s["count"],
                "mean": None if s["mean_ms"] is None else round(s["mean_ms"], 2),
                "p50": s["p50_ms"],
                "p95": s["p95_ms"],
                "p99": s["p99_ms"],
            }
            for name, stages in groups
            for stage, s in stages.items()
        ]
