"""prometheus.json: range queries over the window through a fake Prometheus API, read back by the report."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from lab import prometheus
from lab.grid import ExperimentSettings
from lab.report import write_report
from lab.results import SchemaError, config_dirs, measurement_dirs, read_measurement_record
from tests.lab.golden import Config, Measurement, row_with, write_run

ADDRESSES = {"10.0.0.2": "replica-a", "10.0.0.3": "replica-b"}


class FakePrometheus:
    """/api/v1/query and /api/v1/query_range as Prometheus answers them; replica b has no samples from
    `gap_from` to `gap_to` (killed and restarted)."""

    def __init__(self, gap: tuple[float, float] | None = None, failing: str | None = None) -> None:
        self.gap = gap
        self.failing = failing
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, path: str, params: Mapping[str, Any]) -> Any:
        self.asked.append((path, dict(params)))
        if path == "/api/v1/query":
            return {"status": "success", "data": {"resultType": "vector", "result": []}}
        if self.failing and params["query"] == prometheus.QUERIES[self.failing].expr:
            return {"status": "error", "errorType": "bad_data", "error": "parse error"}
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        times = [start + i * step for i in range(int((end - start) / step) + 1)]
        result = []
        for address, value in (("10.0.0.2", 4.0), ("10.0.0.3", 6.0)):
            kept = [
                t
                for t in times
                if not (address == "10.0.0.3" and self.gap and self.gap[0] <= t - start < self.gap[1])
            ]
            # Prometheus sends values as strings, times at millisecond precision.
            values = [[round(t, 3), "NaN" if value == 6.0 and t == times[0] else str(value)] for t in kept]
            result.append({"metric": {"instance": f"{address}:8000", "job": "classifier"}, "values": values})
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_record_asks_for_exactly_the_window_at_the_scrape_step() -> None:
    fake = FakePrometheus()
    record = prometheus.Recorder("http://prom", fake).record(1000.25, 1030.25, ADDRESSES)
    ranges = [params for path, params in fake.asked if path == "/api/v1/query_range"]
    assert {(p["start"], p["end"], p["step"]) for p in ranges} == {(1000.25, 1030.25, prometheus.STEP_S)}
    assert [p["query"] for p in ranges] == [q.expr for q in prometheus.QUERIES.values()]
    assert record.recorded and not record.errors
    (a, b) = record.series["rps"]
    assert a.instance == "10.0.0.2:8000" and len(a.points) == 7
    assert b.points[0] == (1000.25, None)  # NaN (no rate yet) is kept as "no value"


def test_file_round_trips_and_refuses_unknown_versions(tmp_path: Path) -> None:
    record = prometheus.Recorder("http://prom", FakePrometheus(failing="batch_size")).record(
        0.0, 20.0, ADDRESSES
    )
    assert record.errors.keys() == {"batch_size"} and "batch_size" not in record.series
    prometheus.write(tmp_path, record)
    assert prometheus.read(tmp_path) == record
    data = json.loads((tmp_path / prometheus.FILE).read_text())
    assert data["schema_version"] == prometheus.SCHEMA_VERSION
    (tmp_path / prometheus.FILE).write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(SchemaError, match="schema version 99"):
        prometheus.read(tmp_path)
    assert prometheus.read(tmp_path / "nowhere") is None


def test_unreachable_prometheus_is_recorded_as_why_not() -> None:
    def down(path: str, params: Mapping[str, Any]) -> Any:
        raise ValueError("connection refused")

    record = prometheus.Recorder("http://prom", down).record(0.0, 20.0)
    assert not record.recorded and "does not answer" in (record.reason or "")
    assert prometheus.note(record).startswith("not recorded: Prometheus at http://prom")


def test_replica_series_has_gaps_where_a_replica_had_no_samples() -> None:
    record = prometheus.Recorder("http://prom", FakePrometheus(gap=(10.0, 20.0))).record(
        500.0, 540.0, ADDRESSES
    )
    series = prometheus.replica_series(record)
    assert series is not None
    assert series.t_s == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]
    a, b = series.by_key["rps"]["replica-a"], series.by_key["rps"]["replica-b"]
    assert a == [4.0] * 9
    gaps = [i for i, v in enumerate(b) if math.isnan(v)]
    assert gaps == [0, 2, 3]  # the first point's NaN, then the killed replica's 10-20 s


def _run_with(tmp_path: Path, write: Any) -> Path:
    settings = ExperimentSettings(replicas=[2], users=[8])
    row = row_with("/predict", 400, 20.0, 20.0, 60.0, 80.0)
    run = write_run(tmp_path / "run-1", settings, [Config(2, [Measurement(8, [row])])])
    for cdir in config_dirs(run):
        for mdir in measurement_dirs(cdir):
            meta = read_measurement_record(mdir)
            assert meta.t_start is not None and meta.t_end is not None
            write(mdir, meta.t_start, meta.t_end)
    return run


def test_report_draws_the_per_replica_chart(tmp_path: Path) -> None:
    def recorded(mdir: Path, t_start: float, t_end: float) -> None:
        fake = FakePrometheus(gap=(5.0, 15.0))
        prometheus.write(mdir, prometheus.Recorder("http://prom", fake).record(t_start, t_end, ADDRESSES))

    run = _run_with(tmp_path, recorded)
    summary = write_report(run)
    html = (run / "report.html").read_text()
    (entry,) = summary.configs
    assert f"<h2>Per replica: {entry.label}</h2><figure><svg" in html
    assert "replica-a" in html and "replica-b" in html
    assert entry.metrics.prometheus_series == "recorded (2 replicas in the window)"
    summary_json = json.loads((run / "summary.json").read_text())
    assert "replica_series" not in summary_json["configs"][0]


def test_report_says_when_the_series_were_not_recorded(tmp_path: Path) -> None:
    why = "no Prometheus: the monitoring profile is not up on this compose stack"

    def not_recorded(mdir: Path, t_start: float, t_end: float) -> None:
        prometheus.write(mdir, prometheus.not_recorded(why))

    run = _run_with(tmp_path, not_recorded)
    write_report(run)
    assert f"Per-replica series (Prometheus): not recorded: {why}." in (run / "summary.md").read_text()
    html = (run / "report.html").read_text()
    assert "Per replica:" not in html and "not recorded: no Prometheus" in html
