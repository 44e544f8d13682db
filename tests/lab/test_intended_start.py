"""The latency from the intended start in the lab: read from arrivals.json, and the SLO's p95 in the open
model (the closed model, which has no intended time, keeps Locust's)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from lab.arrivals import read_arrivals
from lab.metrics import MeasurementMetrics, Thresholds, evaluate
from tests.lab.golden import arrivals_json

FROM_INTENDED = {"count": 900, "mean_ms": 120.0, "p50_ms": 8.0, "p95_ms": 640.0, "p99_ms": 980.0}


def test_arrivals_json_with_and_without_the_intended_start(tmp_path: Path) -> None:
    path = tmp_path / "arrivals.json"
    path.write_text(
        json.dumps(arrivals_json(30, 800, 40, 100, 29.5, 1.0) | {"from_intended_start": FROM_INTENDED})
    )
    read = read_arrivals(path)
    assert read is not None and read.from_intended is not None
    assert (read.from_intended.count, read.from_intended.p95_ms, read.from_intended.p99_ms) == (
        900,
        640.0,
        980.0,
    )
    for closed_or_older in ({"from_intended_start": None}, {}):  # closed model; a master before the field
        path.write_text(json.dumps(arrivals_json(None, 800, 0, 0, 29.5, 1.0) | closed_or_older))
        read = read_arrivals(path)
        assert read is not None and read.from_intended is None


def test_the_open_model_is_judged_from_the_intended_start() -> None:
    base = MeasurementMetrics(
        dir="m", users=8, target_rps=30.0, status="complete", duration_s=20.0, requests=600, p95_ms=40.0
    )
    slo = Thresholds(slo_p95_ms=100.0, max_failure_ratio=0.01)
    assert evaluate(base, slo) == (True, [])  # no intended times (closed model, or an older master)
    late = replace(base, intended_p50_ms=10.0, intended_p95_ms=640.0, intended_p99_ms=980.0)
    assert evaluate(late, slo) == (False, ["p95 from intended start 640 ms > 100 ms"])
    assert evaluate(replace(late, intended_p95_ms=90.0), slo) == (True, [])
