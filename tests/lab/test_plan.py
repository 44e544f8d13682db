"""`lab plan` on synthetic result folders: a closed sweep whose capacities follow a known USL, and an
open-model run at a held-out count to check the latency model against."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lab.cli import EXIT_SLO_UNMET, EXIT_USAGE, app
from lab.grid import ExperimentSettings
from lab.limits import EXTRAPOLATION_LIMIT
from lab.metrics import Thresholds
from lab.plan import SHARED_CORES, PlanRequest, make_plan, model_rows
from lab.report import write_report
from lab.results import read_run
from lab.summary import build_summary, measured_of, read_configs
from lab.usl import throughput
from tests.lab.golden import Config, Measurement, row_with, write_run

GAMMA, ALPHA, BETA = 60.0, 0.08, 0.004
COUNTS = [1, 2, 3, 4]
NOISE = {1: (0.99, 1.01), 2: (1.01, 0.99), 3: (0.995, 1.005), 4: (1.0, 1.0)}


def _closed(replicas: int, repeat: int) -> Config:
    rps = float(throughput(replicas, GAMMA, ALPHA, BETA)) * NOISE[replicas][repeat - 1]
    rows = [row_with("/predict", int(rps * 20), round(rps, 3), 60.0, 110.0, 150.0)]
    return Config(replicas, [Measurement(users=16, traffic=rows)], repeat=repeat)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    settings = ExperimentSettings(replicas=COUNTS, users=[16], repeat=2, duration_s=20.0)
    configs = [_closed(n, k) for k in (1, 2) for n in COUNTS]
    return write_run(tmp_path / "sweep", settings, configs)


@pytest.fixture
def open_run(tmp_path: Path) -> Path:
    settings = ExperimentSettings(replicas=[4], rates=[120.0], duration_s=20.0)
    rows = [row_with("/predict", 2400, 120.0, 22.0, 41.0, 60.0)]
    m = Measurement(users=240, traffic=rows, target_rps=120.0)
    return write_run(tmp_path / "open", settings, [Config(4, [m])])


def _plan(dirs: list[Path], request: PlanRequest):
    thresholds = Thresholds(request.slo_p95_ms, 0.01, request.need_rps)
    measured = [
        replace(m, source=str(d)) for d in dirs for m in measured_of(read_run(d), read_configs(d), thresholds)
    ]
    return make_plan(measured, thresholds, request)


def test_holdout_predicts_the_left_out_count_and_checks_its_latency(sweep: Path, open_run: Path) -> None:
    plan = _plan([sweep, open_run], PlanRequest(150.0, 200.0, holdout=(4,), seed=1))
    (group,) = plan.groups
    assert group.fit.counts == [1, 2, 3]  # 4 held out
    (check,) = group.holdout
    assert check.replicas == 4
    measured = [float(throughput(4, GAMMA, ALPHA, BETA))] * 2
    assert check.measured.n == 2 and check.measured.mean == pytest.approx(np.mean(measured), rel=1e-3)
    # The arithmetic: error is (predicted - measured) / measured, and the band holds the prediction.
    assert check.rps_error_pct == pytest.approx((check.predicted_rps / check.measured.mean - 1) * 100)
    assert check.predicted_low <= check.predicted_rps <= check.predicted_high
    assert abs(check.rps_error_pct) < 10  # exact USL data with 1 % noise: the fit extrapolates one step
    (latency,) = check.latency
    assert group.p95_checks == [latency]  # every --rate run is checked, held out or not
    assert latency.target_rps == 120.0 and latency.measured_p95_ms == 41.0
    assert latency.predicted_p95_ms is not None
    assert latency.error_pct == pytest.approx((latency.predicted_p95_ms / 41.0 - 1) * 100)
    assert plan.budget_note == SHARED_CORES
    # The open-model run measured latency at a rate, not capacity: it is not a fitted point.
    assert group.fit.runs == 6


def test_plan_answers_with_the_pessimistic_end(sweep: Path) -> None:
    plan = _plan([sweep], PlanRequest(150.0, 500.0, seed=2))
    (group,) = plan.groups
    assert group.answer is not None
    chosen = next(p for p in group.predictions if p.replicas == group.answer)
    assert chosen.meets and chosen.capacity_low >= 150.0
    assert chosen.p95_pessimistic_ms is not None and chosen.p95_pessimistic_ms <= 500.0
    # Fewest: the count below does not meet it at the pessimistic end.
    below = [p for p in group.predictions if p.replicas < group.answer]
    assert not any(p.meets for p in below)
    assert group.answer_optimistic is not None and group.answer_optimistic <= group.answer
    assert group.latency is not None and group.latency.service.mean_ms == pytest.approx(16.0)
    assert json.dumps(plan.to_dict())  # a plain record for summary.json


def test_the_budget_is_the_measurements_own(tmp_path: Path) -> None:
    # --cpus-per-replica is a grid dimension (a list in the settings): the plan reads each measurement's
    # budget, as its groups do, not the settings.
    settings = ExperimentSettings(replicas=[1, 2], users=[16], cpus_per_replica=[0.4], duration_s=20.0)
    configs = [replace(_closed(n, 1), cpus_per_replica=0.4) for n in (1, 2)]
    run = write_run(tmp_path / "budget", settings, configs)
    plan = _plan([run], PlanRequest(50.0, 500.0))
    assert plan.cpus_per_replica == 0.4 and plan.budget_note.startswith("each replica limited to 0.4 CPUs")
    assert [g.group for g in plan.groups] == ["c0.4"]
    both = ExperimentSettings(replicas=[1, 2], users=[16], cpus_per_replica=[0.4, 1.0], duration_s=20.0)
    mixed = [replace(_closed(n, 1), cpus_per_replica=c) for c in (0.4, 1.0) for n in (1, 2)]
    plan = _plan([write_run(tmp_path / "two", both, mixed)], PlanRequest(50.0, 500.0))
    assert plan.cpus_per_replica is None and "(0.4, 1 CPUs" in plan.budget_note
    assert sorted(g.group for g in plan.groups) == ["c0.4", "c1"]


def _ramp_step(users: int, rps: float, infer_ms: float) -> Measurement:
    rows = [row_with("/predict", int(rps * 5), rps, 400.0, 700.0, 900.0)]
    server = {"queue": 0.0, "decode": 3.0, "infer": infer_ms, "total": 3.0 + infer_ms}
    return Measurement(users=users, traffic=rows, server_ms=server)


def test_the_latency_model_takes_the_fewest_users_and_no_more_than_the_throughput_allows(
    tmp_path: Path,
) -> None:
    # A closed ramp of one replica past saturation: 9 users got less throughput than 3 (a busy machine),
    # and every step's decode + infer counted requests running side by side in the replica.
    settings = ExperimentSettings(replicas=[1, 2], users=[3], ramp=True, duration_s=20.0)
    steps = [_ramp_step(3, 16.0, 180.0), _ramp_step(6, 16.5, 390.0), _ramp_step(9, 12.0, 600.0)]
    sweep = [Config(1, steps, ramp=True), Config(2, [_ramp_step(3, 30.0, 150.0)], ramp=True)]
    plan = _plan([write_run(tmp_path / "ramp", settings, sweep)], PlanRequest(20.0, 2000.0))
    model = plan.groups[0].latency
    assert model is not None
    assert model.measured_at == "r1-u3"  # the fewest users, not the lowest throughput (u9)
    # 16 req/s x 183 ms is 293 % busy: scaled to 1 / 16 req/s, the p95's ratio to the mean kept.
    assert model.service.mean_ms == pytest.approx(1000.0 / 16.0)
    assert model.service.p95_ms == pytest.approx(1.5 * 1000.0 / 16.0)
    assert model.measured_utilisation == 1.0
    assert any("overlapped inside the replica" in n for n in model.notes)
    prediction = next(p for p in plan.groups[0].predictions if p.replicas == 2)
    assert prediction.p95_ms is not None  # 20 req/s over 2 replicas of 62.5 ms: 62 % busy, a finite queue


def test_plan_refuses_past_four_times_the_largest_count_without_force(tmp_path: Path) -> None:
    # Amdahl-like data with little contention: 1,000 req/s needs ~20 replicas, past 4 x 4 = 16.
    settings = ExperimentSettings(replicas=COUNTS, users=[16], duration_s=20.0)
    configs = []
    for n in COUNTS:
        rps = float(throughput(n, GAMMA, 0.01, 0.0))
        configs.append(Config(n, [Measurement(16, [row_with("/predict", int(rps * 20), rps, 5, 9, 12)])]))
    run = write_run(tmp_path / "flat", settings, configs)
    refused = _plan([run], PlanRequest(1000.0, 1000.0, seed=3)).groups[0]
    assert refused.answer is None
    assert f"{EXTRAPOLATION_LIMIT}x the largest measured count (16 replicas)" in (refused.refused or "")
    assert refused.next_counts and max(refused.next_counts) == 16
    forced = _plan([run], PlanRequest(1000.0, 1000.0, force=True, seed=3)).groups[0]
    assert forced.answer is not None and forced.answer > 16
    assert forced.next_counts[-1] == forced.answer


def test_lab_plan_command(sweep: Path, open_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    record = tmp_path / "plan.json"
    ok = runner.invoke(
        app,
        ["plan", str(sweep), str(open_run), "--need-rps", "150", "--slo-p95-ms", "200", "--holdout", "4",
         "--seed", "1", "--json", str(record)],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "model vs measured" in ok.output and "gamma = " in ok.output and SHARED_CORES[1:] in ok.output
    # --json writes the record the terminal's tables came from: the same plan as make_plan's.
    written = json.loads(record.read_text())
    expected = _plan([sweep, open_run], PlanRequest(150.0, 200.0, holdout=(4,), seed=1))
    assert written == json.loads(json.dumps(expected.to_dict()))
    assert written["schema_version"] == 1 and written["groups"][0]["holdout"][0]["replicas"] == 4
    holdout_all = runner.invoke(
        app,
        ["plan", str(sweep), "--need-rps", "150", "--slo-p95-ms", "200", "--holdout", "2", "--holdout", "3",
         "--holdout", "4"],
    )  # fmt: skip
    assert holdout_all.exit_code == EXIT_USAGE and "at least 2 replica counts" in holdout_all.output
    unmet = runner.invoke(app, ["plan", str(sweep), "--need-rps", "100000", "--slo-p95-ms", "200"])
    assert unmet.exit_code == EXIT_SLO_UNMET
    assert (
        runner.invoke(app, ["plan", str(sweep.parent), "--need-rps", "1", "--slo-p95-ms", "1"]).exit_code == 2
    )


def test_compare_with_need_and_slo_puts_the_plan_in_the_summary(tmp_path: Path) -> None:
    settings = ExperimentSettings(
        replicas=COUNTS, users=[16], repeat=2, duration_s=20.0, need_rps=150.0, slo_p95_ms=500.0
    )
    run = write_run(tmp_path / "sweep", settings, [_closed(n, k) for k in (1, 2) for n in COUNTS])
    summary = build_summary(run)
    assert summary.plan is not None and summary.plan_error is None
    data = summary.to_dict()["plan"]
    assert data["schema_version"] == 1 and data["need_rps"] == 150.0
    (group,) = data["groups"]
    assert group["fit"]["counts"] == COUNTS and group["band"]["fitted_range"] == [1, 4]
    assert group["answer"] == summary.plan.groups[0].answer
    lone = ExperimentSettings(replicas=[2], users=[16], need_rps=1.0, slo_p95_ms=9.0)
    one = write_run(tmp_path / "one", lone, [_closed(2, 1)])
    assert build_summary(one).plan is None and "2 replica counts" in (build_summary(one).plan_error or "")


def test_report_shows_the_plan_model_vs_measured_and_the_repeats(tmp_path: Path) -> None:
    settings = ExperimentSettings(
        replicas=COUNTS, users=[16], repeat=2, duration_s=20.0, need_rps=150.0, slo_p95_ms=500.0
    )
    run = write_run(tmp_path / "sweep", settings, [_closed(n, k) for k in (1, 2) for n in COUNTS])
    summary = write_report(run)
    html = (run / "report.html").read_text()
    md = (run / "summary.md").read_text()
    group = summary.plan.groups[0]
    for text in (html, md):
        assert "Plan past what you measured: all" in text and "Model vs measured: all" in text
        assert "### Repeats" in text or "<h2>Repeats</h2>" in text
    assert html.count("<svg") >= 6  # the five charts and the model's
    # The model-vs-measured rows: one per measured count, the error the table's own arithmetic.
    rows = model_rows(group)
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    mid = group.band.at(2)[1]
    measured = group.measured[1].interval.mean
    assert rows[1][3] == f"{(mid - measured) / measured * 100:+.1f} %"
