"""Reading Locust 2.47's CSVs (as served by the master's /stats/requests/csv and /stats/failures/csv)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

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
    """A stats CSV: one row per request name, and Locust's own "Aggregated" row over all of them. Every
    row is real HTTP traffic, so the Aggregated row is exact: its counts, rate and percentiles come from
    Locust's merged response-time histogram, not from mixing the rows' percentiles."""

    rows: list[StatsRow]
    aggregated: StatsRow | None

    @property
    def requests(self) -> int:
        return self.aggregated.requests if self.aggregated else 0

    @property
    def failures(self) -> int:
        return self.aggregated.failures if self.aggregated else 0

    @property
    def rps(self) -> float:
        return self.aggregated.rps if self.aggregated else 0.0

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def avg_ms(self) -> float | None:
        return self.aggregated.avg_ms if self.aggregated and self.aggregated.requests else None

    def percentile(self, q: float) -> float | None:
        return self.aggregated.percentile(q) if self.aggregated and self.aggregated.requests else None


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
