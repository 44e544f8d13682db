"""The master's /metrics text, parsed back with prometheus_client's own parser (no registry, no env vars)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.locust._modules import load

promexport = load("promexport")
stagestats = load("stagestats")


def _state() -> object:
    timing = stagestats.ServerTimingStats()
    for ms in (0.5, 3.0, 40.0):
        timing.add("/predict", [("infer", ms), ("total", ms * 2)])
    stages = {
        name: {stage: promexport.Histogram(dict(h.counts), h.sum_ms) for stage, h in by_stage.items()}
        for name, by_stage in timing.histograms().items()
    }
    return promexport.SwarmState(
        users=8,
        workers=2,
        requests=[
            promexport.RequestSeries(
                method="POST",
                name="/predict",
                requests=6,
                failures=1,
                current_rps=2.5,
                current_failures_per_s=0.25,
                # Locust's rounded milliseconds: 2 at 4 ms, 3 at 120 ms, 1 at 1200 ms (sum 2768 ms).
                response_times_ms={4: 2, 120: 3, 1200: 1},
                response_time_sum_ms=2768.0,
            ),
            promexport.RequestSeries(
                method="POST",
                name='/odd "name"\\',
                requests=0,
                failures=0,
                current_rps=0.0,
                current_failures_per_s=0.0,
                response_times_ms={},
                response_time_sum_ms=0.0,
            ),
        ],
        stages=stages,
        arrivals={"sent": 6, "late": 2, "dropped": 1, "target_rps": 3.0},
    )


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_family_parses_with_prometheus_naming() -> None:
    text = promexport.render(_state())
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    # The parser names counters without _total; base units in the names.
    assert families == {
        "locust_users": "gauge",
        "locust_workers": "gauge",
        "locust_requests": "counter",
        "locust_failures": "counter",
        "locust_requests_per_second": "gauge",
        "locust_failures_per_second": "gauge",
        "locust_response_time_seconds": "histogram",
        "locust_server_stage_seconds": "histogram",
        "locust_arrivals_sent": "counter",
        "locust_arrivals_late": "counter",
        "locust_arrivals_dropped": "counter",
        "locust_arrivals_target_per_second": "gauge",
    }


def test_values_and_histogram_buckets_in_seconds() -> None:
    samples = _samples(promexport.render(_state()))
    req = frozenset({("method", "POST"), ("name", "/predict")})
    assert samples[("locust_users", frozenset())] == 8
    assert samples[("locust_workers", frozenset())] == 2
    assert samples[("locust_requests_total", req)] == 6
    assert samples[("locust_failures_total", req)] == 1
    assert samples[("locust_requests_per_second", req)] == 2.5

    def bucket(le: str) -> float:
        return samples[("locust_response_time_seconds_bucket", req | {("le", le)})]

    assert bucket("0.0025") == 0 and bucket("0.005") == 2
    assert bucket("0.1") == 2 and bucket("0.25") == 5
    assert bucket("1.0") == 5 and bucket("2.5") == 6 and bucket("+Inf") == 6
    assert samples[("locust_response_time_seconds_count", req)] == 6
    assert samples[("locust_response_time_seconds_sum", req)] == pytest.approx(2.768)
    stage = frozenset({("name", "/predict"), ("stage", "infer")})
    assert samples[("locust_server_stage_seconds_bucket", stage | {("le", "0.001")})] == 1
    assert samples[("locust_server_stage_seconds_bucket", stage | {("le", "0.005")})] == 2
    assert samples[("locust_server_stage_seconds_count", stage)] == 3
    assert samples[("locust_server_stage_seconds_sum", stage)] == pytest.approx(0.0435)
    assert samples[("locust_arrivals_late_total", frozenset())] == 2
    assert samples[("locust_arrivals_target_per_second", frozenset())] == 3.0


def test_label_values_are_escaped() -> None:
    samples = _samples(promexport.render(_state()))
    odd = frozenset({("method", "POST"), ("name", '/odd "name"\\')})
    assert samples[("locust_requests_total", odd)] == 0
    assert samples[("locust_response_time_seconds_bucket", odd | {("le", "+Inf")})] == 0


def test_a_local_run_has_no_workers_gauge() -> None:
    text = promexport.render(promexport.SwarmState(users=1, workers=None))
    assert "locust_workers" not in text
    assert text.endswith("\n")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_promtool_lints_clean() -> None:
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=promexport.render(_state()), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
