"""End to end: `lab plan` on the real compose stack. A short closed-load ramp of 1, 2 and 3 replicas under a
0.4-core budget each, an open-model run at 2 replicas and ~60 % of their measured capacity, then
`lab plan --holdout 3`: the capacity of 3 replicas predicted from 1 and 2 is printed next to what 3
measured, with the error; the open-model run's p95 is printed next to the model's.

Asserted: the plan's structure and its arithmetic against the raw files (Locust's own CSVs), never its
accuracy on this machine (that goes in the README): the numbers are printed."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from lab.usl import throughput
from tests.e2e.compose import Stack
from tests.e2e.conftest import LabCompare, LabRun, run_lab

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUDGET = 0.4
BACKEND = "litert"  # the sweep and the open run recreate replicas 4 times: the lighter model to load
HELD_OUT = 3
LOAD_SHARE = 0.6  # the open-model run's rate, of 2 replicas' measured capacity
SLO_P95_MS = 500.0
EXIT_OK, EXIT_UNMET = 0, 3


def _aggregated(folder: Path) -> dict[str, str]:
    """Locust's own Aggregated row of a measurement (no lab code)."""
    with (folder / "stats.csv").open() as f:
        (row,) = [r for r in csv.DictReader(f) if r["Type"] == "" and r["Name"] == "Aggregated"]
    return row


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


def _capacity(run_dir: Path, replicas: int) -> float:
    """A replica count's capacity in a ramp run: its highest step throughput (no step failed here)."""
    folders = [
        folder
        for folder in run_dir.iterdir()
        if folder.is_dir() and _config(folder)["stack"]["replicas"] == replicas
    ]
    steps = [step for folder in folders for step in folder.glob("step-*") if (step / "stats.csv").is_file()]
    assert steps, f"no ramp steps for {replicas} replicas in {run_dir}"
    for step in steps:
        assert int(_aggregated(step)["Failure Count"]) == 0, step
    return max(float(_aggregated(step)["Requests/s"]) for step in steps)


@pytest.fixture(scope="module")
def sweep(lab_compare: LabCompare) -> LabRun:
    return lab_compare(
        "sweep", "--replicas", "1,2,3", "--cpus-per-replica", str(BUDGET), "--backend", BACKEND,
        "--users", "4", "--ramp", "--ramp-step", "4", "--max-steps", "2", "--step-duration", "4s",
        "--warmup", "2s",
    )  # fmt: skip


@pytest.fixture(scope="module")
def open_run(lab_compare: LabCompare, sweep: LabRun) -> LabRun:
    rate = round(LOAD_SHARE * _capacity(sweep.run_dir, 2), 1)
    return lab_compare(
        "open", "--replicas", "2", "--cpus-per-replica", str(BUDGET), "--backend", BACKEND,
        "--rate", f"{rate:g}", "--duration", "10s", "--warmup", "2s",
    )  # fmt: skip


@pytest.fixture(scope="module")
def plan(stack: Stack, sweep: LabRun, open_run: LabRun, tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    record = tmp_path_factory.mktemp("plan") / "plan.json"
    need = round(1.5 * _capacity(sweep.run_dir, 2), 1)
    done = run_lab(
        stack, "plan", str(sweep.run_dir), str(open_run.run_dir), "--holdout", str(HELD_OUT),
        "--need-rps", f"{need:g}", "--slo-p95-ms", f"{SLO_P95_MS:g}", "--json", str(record), timeout=300,
    )  # fmt: skip
    print(done.stdout[-3000:], done.stderr[-6000:])
    # 3: no count met the need (a plan can say so); anything else is an error.
    assert done.returncode in (EXIT_OK, EXIT_UNMET), done.stderr[-3000:]
    return LabRun(record, done.stdout, done.stderr)


def _group(plan: LabRun) -> dict[str, Any]:
    data = json.loads(plan.run_dir.read_text())
    assert data["schema_version"] == 1 and data["cpus_per_replica"] == BUDGET
    (group,) = data["groups"]
    return group


def test_the_sweep_measured_every_count_under_its_budget(sweep: LabRun) -> None:
    summary = json.loads((sweep.run_dir / "summary.json").read_text())
    assert {c["replicas"] for c in summary["configs"]} == {1, 2, 3}
    assert {c["cpus_per_replica"] for c in summary["configs"]} == {BUDGET}
    for n in (1, 2, 3):
        print(f"r{n} at {BUDGET} cores each: capacity {_capacity(sweep.run_dir, n):.1f} req/s")
    for folder in sorted(p for p in sweep.run_dir.iterdir() if p.is_dir()):
        print(f"{folder.name}: stack set up in {_config(folder)['stack_setup_s']} s")


def test_plan_predicts_the_held_out_count_with_its_error(sweep: LabRun, plan: LabRun) -> None:
    group = _group(plan)
    fit = group["fit"]
    # Fitted on 1 and 2 alone: two counts leave beta unidentifiable, Amdahl's law (beta = 0).
    assert fit["counts"] == [1, 2] and fit["model"] == "amdahl" and fit["beta"] == 0.0
    assert [(c["replicas"], c["fitted"]) for c in group["measured"]] == [(1, True), (2, True), (3, False)]
    for count in group["measured"]:
        # The lab keeps a throughput to 3 decimals.
        assert count["runs"] == [pytest.approx(_capacity(sweep.run_dir, count["replicas"]), abs=5e-4)]
    (check,) = group["holdout"]
    assert check["replicas"] == HELD_OUT
    assert check["measured"]["n"] == 1
    assert check["measured"]["mean"] == pytest.approx(_capacity(sweep.run_dir, HELD_OUT), abs=5e-4)
    measured = check["measured"]["mean"]
    # The prediction is the fit's X(3), inside its band; the error is (predicted - measured) / measured.
    predicted = float(throughput(HELD_OUT, fit["gamma"], fit["alpha"], fit["beta"]))
    assert check["predicted_rps"] == pytest.approx(predicted, rel=1e-9)
    assert check["predicted_low"] <= check["predicted_rps"] <= check["predicted_high"]
    error = (check["predicted_rps"] - measured) / measured * 100
    assert check["rps_error_pct"] == pytest.approx(error, rel=1e-9)
    print(
        f"3 replicas: predicted {predicted:.1f} req/s (band {check['predicted_low']:.1f} to "
        f"{check['predicted_high']:.1f}) from gamma {fit['gamma']:.2f}, alpha {fit['alpha']:.3f}; "
        f"measured {measured:.1f}: error {error:+.1f} %"
    )
    # The terminal's held-out row says the same numbers.
    row = (
        f"{HELD_OUT} │ {predicted:.1f} ({check['predicted_low']:.1f} to {check['predicted_high']:.1f}) │ "
        f"{measured:.1f} (single run: no interval) │ {error:+.1f} %"
    )
    assert row in plan.said, plan.said[-3000:]
    assert "model vs measured (held out)" in plan.said


def test_the_open_model_p95_is_printed_beside_the_models(open_run: LabRun, plan: LabRun) -> None:
    group = _group(plan)
    (check,) = group["p95_checks"]
    (folder,) = [p for p in open_run.run_dir.iterdir() if p.is_dir()]
    config = json.loads((folder / "config.json").read_text())
    assert config["stack"]["replicas"] == 2 and check["label"] == config["label"]
    measured = float(_aggregated(folder)["95%"])
    assert check["target_rps"] == pytest.approx(config["load"]["target_rps"])
    assert check["measured_p95_ms"] == pytest.approx(measured)
    assert check["predicted_p95_ms"] is not None, "the queue model found 2 replicas overloaded at 60 %"
    error = (check["predicted_p95_ms"] - measured) / measured * 100
    assert check["error_pct"] == pytest.approx(error, rel=1e-9)
    print(
        f"{check['label']} at {check['target_rps']:g} req/s: "
        f"p95 predicted {check['predicted_p95_ms']:.0f} ms, measured {measured:.0f} ms ({error:+.0f} %)"
    )
    row = f"{check['label']} │ {check['target_rps']:g} │ {check['predicted_p95_ms']:.0f} │ {measured:.0f} │ "
    assert row + f"{error:+.0f} %" in plan.said, plan.said[-3000:]
    assert "p95 model vs measured (open-model runs)" in plan.said
    latency = group["latency"]
    assert latency is not None and latency["measured_replicas"] == 1
    print("latency model:", json.dumps(latency))
