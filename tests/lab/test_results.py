"""The raw-file records (lab/results.py): what the driver writes reads back the same, every file carries the
schema version, a run written before versions existed still reports, and an unknown version is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import EXIT_USAGE, app
from lab.grid import ExperimentSettings, LoadLevel, StackConfig
from lab.intervals import SINGLE_RUN
from lab.results import (
    CONFIG_FILE,
    MEASUREMENT_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    ConfigRecord,
    Effective,
    MeasurementRecord,
    PlanEntry,
    RunRecord,
    SchemaError,
    StepRecord,
    read_config,
    read_run,
    upgrade,
)
from lab.summary import build_summary
from tests.lab.golden import Config, Measurement, row_with, write_run

V1_RUN = Path(__file__).parent / "fixtures" / "run-v1"  # `lab compare --ramp` output before this module


def _records() -> tuple[RunRecord, ConfigRecord, MeasurementRecord]:
    settings = ExperimentSettings(replicas=[1], rates=[15.0], ramp=True, max_failure_ratio=0.05)
    run = RunRecord(
        run_id="r", settings=settings, status="complete", command=("lab", "compare"), stack_kind="swarm",
        plan=(PlanEntry(1, "r1-rate15-u30", "01-r1-rate15-u30"),), host_cpus=4,
        stack_before={"nodes": [{"hostname": "a"}, {"hostname": "b"}]},
    )  # fmt: skip
    config = ConfigRecord(
        index=1, label="r1-rate15-u30", stack=StackConfig(1, 2, "litert", "on"), load=LoadLevel(30, 15.0),
        ramp=True, effective=Effective(2, "litert", "on", 8),
        steps=(StepRecord("step-01", 30, 15.0, True), StepRecord("step-02", 60, 30.0, False, ("p95 > 1",))),
    )  # fmt: skip
    measurement = MeasurementRecord(
        users=30, target_rps=15.0, status="complete", options={"arrivals": "even"}, t_start=1.0, t_end=5.5,
        downloads={"stats.csv": 200},
    )  # fmt: skip
    return run, config, measurement


def test_records_round_trip_through_json_with_the_schema_version() -> None:
    for record in _records():
        data = json.loads(json.dumps(record.to_dict()))
        assert data["schema_version"] == SCHEMA_VERSION
        assert type(record).from_dict(data) == record
    _, config, measurement = _records()
    assert config.stack_label == "r1-w2-litert-batch" and config.mode == "open"
    assert config.to_dict()["stack_label"] == "r1-w2-litert-batch"  # derived, written for a reader
    assert measurement.window_s == 4.5 and measurement.to_dict()["mode"] == "open"


def test_every_file_the_golden_run_writes_carries_the_version(tmp_path: Path) -> None:
    m = Measurement(8, [row_with("/predict", 100, 5.0, 10, 20, 30)])
    settings = ExperimentSettings(replicas=[1], users=[8], ramp=True)
    run = write_run(tmp_path / "run", settings, [Config(1, [m, m], ramp=True)])
    written = sorted(p for p in run.rglob("*.json") if p.name in (RUN_FILE, CONFIG_FILE, MEASUREMENT_FILE))
    assert [p.relative_to(run).as_posix() for p in written] == [
        "01-r1-u8/config.json", "01-r1-u8/step-01/measurement.json", "01-r1-u8/step-02/measurement.json",
        "run.json",
    ]  # fmt: skip
    assert all(json.loads(p.read_text())["schema_version"] == SCHEMA_VERSION for p in written)


def test_an_unversioned_run_reads_as_version_1_and_is_upgraded() -> None:
    run = read_run(V1_RUN)
    assert run.settings.max_failure_ratio is None  # failure_ratio_given false: not given
    assert run.settings.thresholds_given and run.settings.slo_p95_ms == 1000
    config = read_config(V1_RUN / "01-r1-rate15-u30")
    assert [(s.dir, s.passed) for s in config.steps] == [("step-01", True), ("step-02", True)]
    assert config.load == LoadLevel(30, 15.0) and config.ramp
    # A given failure limit stays given; an unversioned file without the flag keeps a non-default value.
    given = {"replicas": [1], "max_failure_ratio": 0.05, "failure_ratio_given": True}
    assert RunRecord.from_dict({"run_id": "x", "settings": given}).settings.max_failure_ratio == 0.05
    older = {"replicas": [1], "max_failure_ratio": 0.2}
    assert RunRecord.from_dict({"run_id": "x", "settings": older}).settings.failure_limit == 0.2


def test_lab_report_reads_the_previous_layout_to_the_same_numbers(tmp_path: Path) -> None:
    run = tmp_path / "run-v1"
    shutil.copytree(V1_RUN, run)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    expected = json.loads((run / "expected_summary.json").read_text())  # what the old lab reported
    summary = json.loads((run / "summary.json").read_text())
    assert summary["schema_version"] == SCHEMA_VERSION
    for key in ("capacity", "knee", "peak_rps", "slo_met_by_any"):
        assert summary[key] == expected[key], key
    # Added since, and nothing else: intervals over runs (one run: none), --until-stable's decision, the
    # latency from the intended start and whether Prometheus series were recorded (None: a run that did not
    # record them), what GET /model said, the nodes of samples that name theirs (a swarm sampled through
    # --nodes; none here), the successful req/s, the closed model's back-off (None: not recorded), the stalls
    # (an older timeline records no starts: none).
    intended = {"intended_p50_ms", "intended_p95_ms", "intended_p99_ms", "prometheus_series"}
    nodes = {"node_by_container", "cpu_by_node"}
    faults = {"ok_rps", "client_backoff", "stalls"}
    since = {"interval", "stability", "cpus_per_replica", "cpu_budget", "served_model"}
    added = since | intended | nodes | faults

    def old(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in added}

    assert old(summary["recommended"]) == expected["recommended"]
    assert [old(c) for c in summary["configs"]] == expected["configs"]
    assert all(c[k] is None for c in summary["configs"] for k in intended)
    assert all(c["ok_rps"] == round(c["rps"] * (1 - c["failure_ratio"]), 3) for c in summary["configs"])
    assert summary["verdict"] == expected["verdict"].replace(" req/s with", f" req/s ({SINGLE_RUN}) with", 1)
    assert (run / "report.html").is_file()


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "2", True, None])
def test_an_unknown_schema_version_is_refused_with_a_clear_message(tmp_path: Path, version: object) -> None:
    run = tmp_path / "run-v1"
    shutil.copytree(V1_RUN, run)
    meta = json.loads((run / "run.json").read_text())
    meta["schema_version"] = version
    (run / "run.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == EXIT_USAGE, result.output
    text = " ".join(result.output.split())
    assert f"schema version {version!r} is not one this lab reads (1 to {SCHEMA_VERSION})" in text
    assert "run.json" in text and not (run / "summary.json").exists()


def test_a_config_file_of_an_unknown_version_is_refused_too(tmp_path: Path) -> None:
    run = tmp_path / "run-v1"
    shutil.copytree(V1_RUN, run)
    path = run / "01-r1-rate15-u30" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 99}))
    with pytest.raises(SchemaError, match=r"config\.json: schema version 99 is not one this lab reads"):
        build_summary(run)
    with pytest.raises(SchemaError, match="has no index, label"):
        ConfigRecord.from_dict({"stack": {"replicas": 1}})
    assert upgrade({"a": 1}, "measurement") == {"a": 1, "schema_version": SCHEMA_VERSION}


def test_the_client_backoff_is_recorded_and_read_back() -> None:
    from lab.results import ClientBackoff, MeasurementRecord

    answer = {"model": "closed", "backoff": {"first_ms": 100.0, "max_ms": 1000.0}}
    record = MeasurementRecord(users=8, client_backoff=ClientBackoff.from_answer(answer))
    back = MeasurementRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back.client_backoff == ClientBackoff(100.0, 1000.0)
    # The open model, an older master and an older file have none.
    assert ClientBackoff.from_answer({"model": "open", "backoff": None}) is None
    assert ClientBackoff.from_answer(None) is None
    assert MeasurementRecord.from_dict({"users": 8}).client_backoff is None
