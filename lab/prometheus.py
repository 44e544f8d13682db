"""Each measurement's Prometheus series (the `monitoring` profile): range queries over exactly its window,
kept raw in the measurement's prometheus.json, read back by the report's per-replica chart.

With the profile up, `lab compare` asks Prometheus, after each measurement, for per-replica request rate,
p95 latency (from the replicas' histograms), queue depth and batch size, and the host's busy CPU share,
from t_start to t_end at the scrape interval. Without it, the file says why nothing was recorded, and the
report says the series were not recorded. Container CPU is not among the series: the profile has no
cAdvisor, and the lab's own cgroup_cpu.jsonl samples every container's CPU already.

prometheus.json has its own `schema_version` (rules as in lab/results.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lab.results import SchemaError, write_json

FILE = "prometheus.json"
SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"
# services/prometheus/prometheus.yml's scrape_interval: one point per scrape.
STEP_S = 5.0
# Three scrapes: the shortest window `rate` reads reliably at that interval.
RATE_WINDOW = "15s"
_PREDICT = 'endpoint=~"/predict|/predict/tf"'


@dataclass(frozen=True)
class Query:
    expr: str
    unit: str
    title: str


# Per replica (by `instance`, the replica's address:port) unless the query sums it away.
QUERIES: dict[str, Query] = {
    "rps": Query(
        f"sum by (instance) (rate(classifier_requests_total{{{_PREDICT}}}[{RATE_WINDOW}]))",
        "req/s",
        "requests/s per replica",
    ),
    "p95_s": Query(
        "histogram_quantile(0.95, sum by (instance, le) "
        f"(rate(classifier_request_duration_seconds_bucket{{{_PREDICT}}}[{RATE_WINDOW}])))",
        "s",
        "p95 inside each replica",
    ),
    "queue_depth": Query("max by (instance) (classifier_queue_depth)", "images", "queue depth per replica"),
    "batch_size": Query(
        f"sum by (instance) (rate(classifier_batch_size_sum[{RATE_WINDOW}])) / "
        f"sum by (instance) (rate(classifier_batch_size_count[{RATE_WINDOW}]))",
        "images",
        "mean batch size per replica",
    ),
    "host_cpu": Query(
        f'1 - avg(rate(node_cpu_seconds_total{{mode="idle"}}[{RATE_WINDOW}]))', "share", "host CPU busy"
    ),
}
NOT_SCRAPED = {"container_cpu": "no cAdvisor in the profile; cgroup_cpu.jsonl has each container's CPU"}


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float | None]]  # (Unix time, value; None for NaN)

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")


@dataclass(frozen=True)
class PrometheusRecord:
    """prometheus.json: one measurement's series, or why there are none."""

    recorded: bool
    reason: str | None = None  # why not recorded
    url: str | None = None
    t_start: float | None = None
    t_end: float | None = None
    step_s: float = STEP_S
    queries: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[Series]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # query key -> Prometheus's error
    # A replica's address (`instance` without the port) -> its hostname (its X-Served-By), when the stack
    # can tell.
    replicas: dict[str, str] = field(default_factory=dict)
    not_scraped: dict[str, str] = field(default_factory=lambda: dict(NOT_SCRAPED))

    def name(self, address: str) -> str:
        return self.replicas.get(address) or address

    def to_dict(self) -> dict[str, Any]:
        return {
            VERSION_KEY: SCHEMA_VERSION,
            "recorded": self.recorded,
            "reason": self.reason,
            "url": self.url,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "step_s": self.step_s,
            "queries": self.queries,
            "series": {
                key: [{"labels": s.labels, "points": [list(p) for p in s.points]} for s in series]
                for key, series in self.series.items()
            },
            "errors": self.errors,
            "replicas": self.replicas,
            "not_scraped": self.not_scraped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrometheusRecord:
        version = data.get(VERSION_KEY)
        if type(version) is not int or version != SCHEMA_VERSION:
            raise SchemaError(
                f"{FILE}: schema version {version!r} is not one this lab reads ({SCHEMA_VERSION})"
            )
        series = {
            str(key): [
                Series(
                    {str(k): str(v) for k, v in s["labels"].items()},
                    [(float(t), None if v is None else float(v)) for t, v in s["points"]],
                )
                for s in items
            ]
            for key, items in (data.get("series") or {}).items()
        }
        return cls(
            recorded=bool(data["recorded"]),
            reason=data.get("reason"),
            url=data.get("url"),
            t_start=data.get("t_start"),
            t_end=data.get("t_end"),
            step_s=float(data.get("step_s") or STEP_S),
            queries=dict(data.get("queries") or {}),
            series=series,
            errors=dict(data.get("errors") or {}),
            replicas=dict(data.get("replicas") or {}),
            not_scraped=dict(data.get("not_scraped") or {}),
        )


def read(mdir: Path) -> PrometheusRecord | None:
    """The measurement's record, or None for a measurement from before this file existed."""
    path = mdir / FILE
    if not path.is_file():
        return None
    try:
        return PrometheusRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, SchemaError):
            raise SchemaError(f"{path}: {err}") from None
        raise SchemaError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


Get = Callable[[str, Mapping[str, Any]], Any]  # (path, params) -> the answer's JSON


def http_get(url: str, timeout_s: float = 10.0) -> Get:
    base = url.rstrip("/")

    def get(path: str, params: Mapping[str, Any]) -> Any:
        response = httpx.get(f"{base}{path}", params=dict(params), timeout=timeout_s)
        return response.json()

    return get


def _value(raw: str) -> float | None:
    value = float(raw)
    return value if math.isfinite(value) else None


def not_recorded(reason: str, url: str | None = None) -> PrometheusRecord:
    return PrometheusRecord(recorded=False, reason=reason, url=url, not_scraped={})


class Recorder:
    """Range queries against one Prometheus, for the driver: `record(t_start, t_end)` per measurement."""

    def __init__(self, url: str, get: Get | None = None) -> None:
        self.url = url
        self._get = get or http_get(url)

    def unavailable(self) -> str | None:
        """Why this Prometheus cannot be asked (None: it answers)."""
        try:
            answer = self._get("/api/v1/query", {"query": "up"})
        except (httpx.HTTPError, ValueError) as err:
            return f"Prometheus at {self.url} does not answer ({type(err).__name__}: {err})"
        if not isinstance(answer, Mapping) or answer.get("status") != "success":
            return f"Prometheus at {self.url} answered {str(answer)[:200]}"
        return None

    def record(
        self, t_start: float, t_end: float, replicas: Mapping[str, str] | None = None
    ) -> PrometheusRecord:
        why = self.unavailable()
        if why is not None:
            return not_recorded(why, self.url)
        series: dict[str, list[Series]] = {}
        errors: dict[str, str] = {}
        for key, query in QUERIES.items():
            params = {"query": query.expr, "start": t_start, "end": t_end, "step": STEP_S}
            try:
                answer = self._get("/api/v1/query_range", params)
            except (httpx.HTTPError, ValueError) as err:
                errors[key] = f"{type(err).__name__}: {err}"
                continue
            if not isinstance(answer, Mapping) or answer.get("status") != "success":
                errors[key] = str(answer.get("error") if isinstance(answer, Mapping) else answer)[:300]
                continue
            series[key] = [
                Series(
                    {str(k): str(v) for k, v in item.get("metric", {}).items()},
                    [(float(t), _value(v)) for t, v in item.get("values", [])],
                )
                for item in answer["data"]["result"]
            ]
        return PrometheusRecord(
            recorded=True,
            url=self.url,
            t_start=t_start,
            t_end=t_end,
            queries={key: q.expr for key, q in QUERIES.items()},
            series=series,
            errors=errors,
            replicas=dict(replicas or {}),
        )


def write(mdir: Path, record: PrometheusRecord) -> None:
    write_json(mdir / FILE, record.to_dict())


# ---- for the report ------------------------------------------------------------------------------------

CHART_KEYS = ("rps", "p95_s", "queue_depth")  # the per-replica chart's panels, top to bottom


@dataclass(frozen=True)
class ReplicaSeries:
    """What the per-replica chart draws: t in seconds from the measurement's start (the timeline's axis),
    one value per scrape step, NaN where a replica had no sample (down, or not yet a target)."""

    t_s: list[float]
    by_key: dict[str, dict[str, list[float]]]  # query key -> replica name -> values on t_s


def replica_series(record: PrometheusRecord) -> ReplicaSeries | None:
    if not record.recorded or record.t_start is None or record.t_end is None:
        return None
    t0, step = record.t_start, record.step_s
    steps = math.floor((record.t_end - t0) / step + 1e-9) + 1
    by_key: dict[str, dict[str, list[float]]] = {}
    for key in CHART_KEYS:
        lines: dict[str, list[float]] = {}
        for s in record.series.get(key, []):
            values = [math.nan] * steps
            for t, v in s.points:
                # Prometheus evaluates at start + i * step (start at millisecond precision).
                i = round((t - t0) / step)
                if 0 <= i < steps and v is not None:
                    values[i] = v
            lines[record.name(s.instance.rsplit(":", 1)[0]) if s.instance else key] = values
        by_key[key] = dict(sorted(lines.items()))
    return ReplicaSeries([round(i * step, 2) for i in range(steps)], by_key)


def note(record: PrometheusRecord | None) -> str | None:
    """One line for the report: whether the series were recorded, and why not."""
    if record is None:
        return None
    if not record.recorded:
        return f"not recorded: {record.reason}"
    failed = f"; queries that failed: {', '.join(sorted(record.errors))}" if record.errors else ""
    return f"recorded ({len(record.series.get('rps', []))} replicas in the window){failed}"
