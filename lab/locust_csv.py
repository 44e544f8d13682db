"""Reading Locust 2.47's CSVs (as served by the master's /stats/requests/csv and /stats/failures/csv).

The locustfile adds rows with Type == "SERVER" (one per Server-Timing metric). They are not traffic:
totals here are computed from the other rows only. Locust's own "Aggregated" row includes them, so it is
never used for totals.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path

SERVER_TYPE = "SERVER"
AGGREGATED = "Aggregated"
# Percentile columns Locust 2.47 writes by default, as fractions.
PERCENTILE_COLUMNS = {
    "50%": 0.5,
    "66%": 0.66,
    "75%": 0.75,
    "80%": 0.8,
    "90%": 0.9,
    "95%": 0.95,
    "98%": 0.98,
    "99%": 0.99,
    "99.9%": 0.999,
    "99.99%": 0.9999,
    "100%": 1.0,
}


@dataclass
class StatsRow:
    type: str
    name: str
    requests: int
    failures: int
    median_ms: float
    avg_ms: float
    min_ms: float
    max_ms: float
    avg_size: float
    rps: float
    failures_per_s: float
    percentiles: dict[float, float | None] = field(default_factory=dict)

    def percentile(self, q: float) -> float | None:
        return self.percentiles.get(q)


@dataclass
class LocustStats:
    rows: list[StatsRow]
    aggregated: StatsRow | None

    @property
    def traffic(self) -> list[StatsRow]:
        return [r for r in self.rows if r.type != SERVER_TYPE]

    def server(self, name: str) -> StatsRow | None:
        for row in self.rows:
            if row.type == SERVER_TYPE and row.name == name:
                return row
        return None

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.traffic)

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.traffic)

    @property
    def rps(self) -> float:
        # Locust divides every row by the same window (stats-wide first to last request), so the
        # rows' rates add up to the traffic's rate.
        return sum(r.rps for r in self.traffic)

    @property
    def failure_ratio(self) -> float:
        total = self.requests
        return self.failures / total if total else 0.0

    @property
    def avg_ms(self) -> float | None:
        total = self.requests
        if not total:
            return None
        return sum(r.avg_ms * r.requests for r in self.traffic) / total

    def percentile(self, q: float) -> float | None:
        return mixture_percentile(self.traffic, q)


def _float(value: str) -> float | None:
    value = value.strip()
    if not value or value == "N/A":
        return None
    return float(value)


def parse_stats_csv(text: str) -> LocustStats:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"Type", "Name", "Request Count", "Failure Count", "Requests/s"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"not a Locust stats CSV (missing columns: {', '.join(sorted(missing))})")
    rows: list[StatsRow] = []
    aggregated: StatsRow | None = None
    for rec in reader:
        row = StatsRow(
            type=rec["Type"],
            name=rec["Name"],
            requests=int(rec["Request Count"]),
            failures=int(rec["Failure Count"]),
            median_ms=_float(rec.get("Median Response Time", "")) or 0.0,
            avg_ms=_float(rec.get("Average Response Time", "")) or 0.0,
            min_ms=_float(rec.get("Min Response Time", "")) or 0.0,
            max_ms=_float(rec.get("Max Response Time", "")) or 0.0,
            avg_size=_float(rec.get("Average Content Size", "")) or 0.0,
            rps=_float(rec["Requests/s"]) or 0.0,
            failures_per_s=_float(rec.get("Failures/s", "")) or 0.0,
            percentiles={q: _float(rec[col]) for col, q in PERCENTILE_COLUMNS.items() if col in rec},
        )
        if row.name == AGGREGATED and not row.type:
            aggregated = row
        else:
            rows.append(row)
    return LocustStats(rows, aggregated)


def read_stats_csv(path: Path) -> LocustStats:
    return parse_stats_csv(path.read_text(encoding="utf-8"))


@dataclass
class FailureRow:
    method: str
    name: str
    error: str
    occurrences: int


def parse_failures_csv(text: str) -> list[FailureRow]:
    reader = csv.DictReader(io.StringIO(text))
    if "Occurrences" not in (reader.fieldnames or []):
        raise ValueError("not a Locust failures CSV (no Occurrences column)")
    return [
        FailureRow(rec["Method"], rec["Name"], rec["Error"], int(rec["Occurrences"]))
        for rec in reader
        if rec.get("Occurrences")
    ]


def _row_cdf_points(row: StatsRow) -> list[tuple[float, float]]:
    """(response time, cumulative fraction) points of one row, from its min and reported percentiles."""
    points: dict[float, float] = {row.min_ms: 0.0}
    for q, value in sorted(row.percentiles.items()):
        if value is None:
            continue
        # Several percentiles can share one value (e.g. 99.9 % = 100 % = max): keep the highest fraction.
        points[value] = max(points.get(value, 0.0), q)
    ordered = sorted(points.items())
    # Percentiles are rounded by Locust, so the min can sit above p50's rounded value: keep it monotone.
    out: list[tuple[float, float]] = []
    best = 0.0
    for value, q in ordered:
        best = max(best, q)
        out.append((value, best))
    return out


def _cdf(points: list[tuple[float, float]], x: float) -> float:
    if x < points[0][0]:
        return 0.0
    for (x0, q0), (x1, q1) in itertools.pairwise(points):
        if x0 <= x < x1:
            return q0 + (q1 - q0) * (x - x0) / (x1 - x0)
    return points[-1][1] if x >= points[-1][0] else 0.0


def mixture_percentile(rows: list[StatsRow], q: float) -> float | None:
    """The q-quantile of several rows' requests taken together.

    Locust's CSV gives each row's percentiles, not its histogram, so the rows are mixed as piecewise-linear
    CDFs weighted by request counts. With a single row (or rows with equal distributions) this returns the
    row's own reported percentile exactly; with several rows it is an interpolation between them.
    """
    weighted = [(row, row.requests) for row in rows if row.requests > 0 and row.percentile(q) is not None]
    if not weighted:
        return None
    if len(weighted) == 1:
        return weighted[0][0].percentile(q)
    total = sum(w for _, w in weighted)
    curves = [(_row_cdf_points(row), w / total) for row, w in weighted]
    xs = sorted({x for points, _ in curves for x, _ in points})

    def mixed(x: float) -> float:
        return sum(weight * _cdf(points, x) for points, weight in curves)

    previous_x, previous_f = xs[0], mixed(xs[0])
    if previous_f >= q - 1e-12:
        return previous_x
    for x in xs[1:]:
        f = mixed(x)
        if f >= q - 1e-12:
            if f == previous_f:
                return x
            # Rounded: float noise would otherwise put 100 at 99.99999999999986.
            return round(previous_x + (x - previous_x) * (q - previous_f) / (f - previous_f), 6)
        previous_x, previous_f = x, f
    return xs[-1]
