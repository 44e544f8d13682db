"""The swarm's numbers in Prometheus's text format, for GET /metrics on the master's web UI.

Locust's maintainers declined a built-in /metrics (locustio/locust#622); this one serves what the master
already holds, merged across workers: users and workers, requests, failures and the current rate per
request name, response-time histograms from Locust's own response-time dicts, the Server-Timing stages
(stagestats) and the open model's arrivals. Names follow Prometheus's conventions: base units (seconds),
`_total` on counters, `locust_` in front. Counters restart from 0 when a test starts (Locust resets its
stats then); `rate()` and `increase()` treat that as a counter reset.

Written by hand: prometheus_client is not a dependency of the Locust image, and the format is small (text
exposition format 0.0.4). No Locust import: the locustfile turns its environment into a `SwarmState`, and
tests render one in-process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds (seconds) of the response-time and stage histograms: the classifier's own buckets
# (services/classifier/classifier/metrics.py) plus 30 and 60 s, since a client waits through queues too.
# Locust keeps response times rounded (to 10 ms from 100 ms, 100 ms from 1 s, 1 s from 10 s), so a
# request within half a rounding step of a bound may be counted in the bucket next to it.
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class RequestSeries:
    """One row of Locust's request stats (one request name and method), as the master holds it."""

    method: str
    name: str
    requests: int
    failures: int
    current_rps: float
    current_failures_per_s: float
    response_times_ms: Mapping[float, int]  # Locust's rounded response time (ms) -> count
    response_time_sum_ms: float


@dataclass(frozen=True)
class Histogram:
    """Counts of values (milliseconds) at their recorded resolution, and their exact sum."""

    counts_ms: Mapping[float, int]
    sum_ms: float


@dataclass(frozen=True)
class SwarmState:
    users: int
    workers: int | None  # None on a local run (no master, no workers)
    requests: list[RequestSeries] = field(default_factory=list)
    stages: Mapping[str, Mapping[str, Histogram]] = field(default_factory=dict)  # name -> stage -> hist
    arrivals: Mapping[str, Any] = field(default_factory=dict)  # arrivals_summary() of the locustfile


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


Sample = tuple[str, Mapping[str, str], float]  # (name suffix, labels, value)


class Exposition:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        """One metric family; for a counter `name` ends in _total, as the samples' names do."""
        self._lines.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        self._lines.append(f"# TYPE {name} {kind}")
        base = name.removesuffix("_total") if kind == "counter" else name
        for suffix, labels, value in samples:
            sample_name = name if kind == "counter" else base + suffix
            self._lines.append(f"{sample_name}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def histogram_samples(hist: Histogram, labels: Mapping[str, str]) -> list[Sample]:
    """Cumulative `_bucket` samples at BUCKETS_S and +Inf, then `_sum` and `_count`, in seconds."""
    values = sorted(hist.counts_ms.items())
    samples: list[Sample] = []
    seen, i = 0, 0
    for bound in BUCKETS_S:
        while i < len(values) and values[i][0] / 1000 <= bound:
            seen += values[i][1]
            i += 1
        # As prometheus_client writes them ("1.0"): `le` matches the classifier's on Prometheus 2 and 3.
        samples.append(("_bucket", {**labels, "le": repr(float(bound))}, seen))
    total = sum(n for _, n in values)
    samples.append(("_bucket", {**labels, "le": "+Inf"}, total))
    samples.append(("_sum", labels, hist.sum_ms / 1000))
    samples.append(("_count", labels, total))
    return samples


def render(state: SwarmState) -> str:
    out = Exposition()
    out.family("locust_users", "gauge", "Users running across the swarm.", [("", {}, state.users)])
    if state.workers is not None:
        out.family("locust_workers", "gauge", "Workers connected to the master.", [("", {}, state.workers)])

    def by_request(series: RequestSeries) -> dict[str, str]:
        return {"method": series.method, "name": series.name}

    rows = sorted(state.requests, key=lambda s: (s.name, s.method))
    out.family(
        "locust_requests_total",
        "counter",
        "Requests sent (answered or failed) since the test started, by request name.",
        [("", by_request(s), s.requests) for s in rows],
    )
    out.family(
        "locust_failures_total",
        "counter",
        "Requests that failed since the test started, by request name.",
        [("", by_request(s), s.failures) for s in rows],
    )
    out.family(
        "locust_requests_per_second",
        "gauge",
        "Locust's current request rate (its sliding window), by request name.",
        [("", by_request(s), s.current_rps) for s in rows],
    )
    out.family(
        "locust_failures_per_second",
        "gauge",
        "Locust's current failure rate (its sliding window), by request name.",
        [("", by_request(s), s.current_failures_per_s) for s in rows],
    )
    out.family(
        "locust_response_time_seconds",
        "histogram",
        "Response times as the clients saw them, merged across workers (Locust's rounded values).",
        [
            sample
            for s in rows
            for sample in histogram_samples(
                Histogram(s.response_times_ms, s.response_time_sum_ms), by_request(s)
            )
        ],
    )
    out.family(
        "locust_server_stage_seconds",
        "histogram",
        "Server-Timing stages of successful answers (fetch, queue, decode, infer, total), by request name.",
        [
            sample
            for name in sorted(state.stages)
            for stage, hist in state.stages[name].items()
            for sample in histogram_samples(hist, {"name": name, "stage": stage})
        ],
    )
    arrivals = state.arrivals
    for key, help_text in (
        ("sent", "Arrivals sent since the test started (every request, closed model too)."),
        ("late", "Open model: arrivals sent after their time, since no user was free."),
        ("dropped", "Open model: arrivals never sent, later than users/rate."),
    ):
        out.family(f"locust_arrivals_{key}_total", "counter", help_text, [("", {}, arrivals.get(key, 0))])
    out.family(
        "locust_arrivals_target_per_second",
        "gauge",
        "Open model's target arrival rate; 0 for the closed model.",
        [("", {}, float(arrivals.get("target_rps") or 0.0))],
    )
    return out.text()
