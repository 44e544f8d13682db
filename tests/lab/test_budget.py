"""CPU budgets: each replica against its budget from cgroup samples, whether the budgets were real on the
machine (the verdict), the report's table, the grid dimension and `--pin`'s cpusets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.budget import check_pin, cpu_budget, cpusets
from lab.cgroups import CGROUP_CPU_FILE
from lab.grid import ExperimentSettings, expand
from lab.report import render_markdown
from lab.summary import build_summary
from tests.lab.golden import Config, Measurement, classifier_samples, row_with, write_run

T0 = 1_795_600_000.0


def samples(
    name: str, service: str, cores: float, quota: float | None, throttled_share: float = 0.0, n: int = 11
) -> list[dict[str, Any]]:
    """cgroup_cpu.jsonl lines every 2 s of a container using `cores`, throttled in that share of periods."""
    rows = []
    for i in range(n):
        periods = 20 * i if quota is not None else 0  # 100-ms periods while it runs under a quota
        rows.append({
            "t": T0 + 2 * i, "container": name, "service": service, "pid": 100, "version": 1,
            "usage_s": 50.0 + cores * 2 * i, "nr_periods": periods,
            "nr_throttled": round(periods * throttled_share), "throttled_s": 0.03 * i * throttled_share,
            "quota_cores": quota,
        })  # fmt: skip
    return rows


def stack(replicas: int, each: float, quota: float | None, others: float, share: float = 0.3) -> list[dict]:
    rows = []
    for k in range(1, replicas + 1):
        rows += samples(f"loadlab-classifier-{k}", "classifier", each, quota, share)
    rows += samples("loadlab-nginx-1", "nginx", others / 2, None)
    rows += samples("loadlab-locust-worker-1", "locust-worker", others / 2, None)
    return rows


def test_mean_cores_and_throttling_per_replica() -> None:
    budget = cpu_budget(stack(2, 0.48, 0.5, 0.6), host_cpus=2, asked_cores=0.5)
    assert budget is not None
    one, _ = budget.replicas
    assert one.container == "loadlab-classifier-1" and one.budget_cores == 0.5
    assert one.mean_cores == pytest.approx(0.48) and one.sampled_s == 20.0
    assert (one.periods, one.throttled_periods, one.throttled_share) == (200, 60, 0.3)
    assert one.throttled_s == pytest.approx(0.09) and not one.over_budget
    assert [o.container for o in budget.others] == ["loadlab-locust-worker-1", "loadlab-nginx-1"]
    # 2 x 0.5 + 0.6 = 1.6 of 2 cores: real.
    assert budget.committed_cores == pytest.approx(1.6) and budget.real is True and not budget.not_applied


def test_budgets_that_do_not_fit_the_machine_are_not_real() -> None:
    budget = cpu_budget(stack(2, 0.5, 0.5, 1.2), host_cpus=2, asked_cores=0.5)
    assert budget is not None and budget.committed_cores == pytest.approx(2.2) and budget.real is False


def test_no_budget_and_a_budget_not_applied() -> None:
    free = cpu_budget(stack(1, 1.4, None, 0.3), host_cpus=2, asked_cores=None)
    assert free is not None and free.budget_cores is None and free.real is None and not free.not_applied
    assert free.replicas[0].throttled_share is None
    missing = cpu_budget(stack(1, 1.4, None, 0.3), host_cpus=2, asked_cores=0.5)
    assert missing is not None and missing.not_applied


def test_a_restart_is_left_out_and_errors_are_skipped() -> None:
    rows = samples("loadlab-classifier-1", "classifier", 0.5, 0.5)
    # From the 6th sample on, a new process whose counters start again at 0 (a kill-replica fault).
    for row in rows[5:]:
        row["pid"] = 101
        row["usage_s"] -= 50.0 + 0.5 * 2 * 5
        row["nr_periods"] -= 100
        row["nr_throttled"] = 0
    rows.append({"t": T0 + 30, "container": "loadlab-classifier-1", "service": "classifier", "error": "gone"})
    budget = cpu_budget(rows, host_cpus=2, asked_cores=0.5)
    assert budget is not None
    (replica,) = budget.replicas
    assert replica.sampled_s == 18.0 and replica.mean_cores == pytest.approx(0.5)
    assert cpu_budget([{"t": T0, "error": "no docker"}], 2, 0.5) is None


def _budget_run(tmp_path: Path, others: float) -> Path:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], cpus_per_replica=[0.5])
    configs = []
    for replicas in (1, 2):
        row = row_with("/predict", 400, 20.0 * replicas, 100, 300, 450)
        m = Measurement(8, [row], docker=classifier_samples(replicas, 49.0))
        configs.append(Config(replicas, [m]))
    run = write_run(tmp_path / "run", settings, configs)
    for cdir, replicas in zip(sorted(p for p in run.iterdir() if p.is_dir()), (1, 2), strict=True):
        cfg = json.loads((cdir / "config.json").read_text())
        cfg["effective"]["cpus_per_replica"] = 0.5
        (cdir / "config.json").write_text(json.dumps(cfg))
        lines = stack(replicas, 0.49, 0.5, others)
        (cdir / CGROUP_CPU_FILE).write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def test_the_summary_verdict_and_report_show_the_budgets(tmp_path: Path) -> None:
    summary = build_summary(_budget_run(tmp_path, others=1.3))
    r1, r2 = summary.configs
    assert r1.cpus_per_replica == 0.5 and r1.metrics.cpu_budget is not None
    assert r1.metrics.cpu_budget.real is True  # 0.5 + 1.3 = 1.8 of 2
    assert r2.metrics.cpu_budget is not None and r2.metrics.cpu_budget.real is False  # 1.0 + 1.3 = 2.3
    saved = summary.to_dict()["configs"][1]["cpu_budget"]
    assert saved["committed_cores"] == 2.3 and saved["real"] is False
    assert [r["mean_cores"] for r in saved["replicas"]] == [0.49, 0.49]
    assert [r["throttled_share"] for r in saved["replicas"]] == [0.3, 0.3]
    assert (
        "In r2-u8 the budgets were not real: 2 replica(s) x 0.5 cores plus the 1.30 cores" in summary.verdict
    )
    assert "come to 2.30 of the machine's 2 cores" in summary.verdict
    assert "stopped replicas in up to 30% of their CFS periods" in summary.verdict
    text = render_markdown(summary)
    assert "### CPU budget" in text
    assert "| r2-u8 | loadlab-classifier-2 | 0.5 | 0.49 | 30.0% of 200 | 0.09 | 1.30 | no: 2.30 > 2 |" in text


def test_real_budgets_say_nothing_about_reality(tmp_path: Path) -> None:
    run = _budget_run(tmp_path, others=0.4)
    assert "not real" not in build_summary(run).verdict
    # A machine busy with other processes while the budgets fitted: not "give each replica its cores".
    for cdir in (p for p in run.iterdir() if p.is_dir()):
        (cdir / "host_cpu.jsonl").write_text(json.dumps({"t": T0, "busy_cores": 1.95, "cores": 2}) + "\n")
    verdict = build_summary(run).verdict
    assert (
        "cores were nearly all busy" in verdict and "the replicas' CPU budgets fitted the machine" in verdict
    )
    assert "--cpus-per-replica, --pin" not in verdict


def test_the_budget_is_a_grid_dimension_and_recreates_the_replicas() -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], cpus_per_replica=[0.5, 1.0])
    assert [p.label for p in expand(settings)] == ["r1-c0.5-u8", "r2-c0.5-u8", "r1-c1-u8", "r2-c1-u8"]
    with pytest.raises(ValueError, match="--cpus-per-replica"):
        ExperimentSettings(replicas=[1], users=[8], cpus_per_replica=[0.0]).validate()
    with pytest.raises(ValueError, match="--pin needs --cpus-per-replica"):
        ExperimentSettings(replicas=[1], users=[8], pin=True).validate()


def test_pin_gives_each_replica_whole_cores_and_the_rest_to_the_stack() -> None:
    assert cpusets(2, 1.0, 4).replicas == ["0", "1"] and cpusets(2, 1.0, 4).rest == "2-3"
    assert cpusets(2, 1.5, 8).replicas == ["0-1", "2-3"] and cpusets(2, 1.5, 8).rest == "4-7"
    assert cpusets(1, 0.5, 2).replicas == ["0"] and cpusets(1, 0.5, 2).rest == "1"


def test_pin_is_refused_where_the_machine_lacks_the_cores() -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], cpus_per_replica=[0.5], pin=True)
    with pytest.raises(
        ValueError, match=r"needs 2 replica\(s\) x 1 core\(s\) \+ 1 core .* = 3 cores; this machine has 2"
    ):
        check_pin(settings, host_cpus=2)
    check_pin(settings, host_cpus=3)
