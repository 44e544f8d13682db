"""End to end: `lab compare --cpus-per-replica 0.5` on the real compose stack. Each replica runs under a
0.5-core CFS quota with one inference thread; the summary holds its CPU against the budget and its
throttling from the cgroup; afterwards the replicas run without a limit again. `--pin` is refused where
the machine lacks the cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.compose import ROOT, Stack
from tests.e2e.conftest import REPLICAS, WORKERS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUDGET = 0.5


def _lab(stack: Stack, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lab.cli", "compare", *args, "--project-name", stack.project]
    return subprocess.run(cmd, cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    stack.compose(
        "up", "-d", "--no-deps", "--scale", f"locust-worker={WORKERS}", "locust-master", "locust-worker"
    )
    stack.wait_healthy("locust-master", 1)
    out = tmp_path_factory.mktemp("budget")
    done = _lab(
        stack, "--replicas", "1,2", "--cpus-per-replica", str(BUDGET), "--users", "8",
        "--duration", "20s", "--warmup", "5s", "--out", str(out),
    )  # fmt: skip
    print(done.stdout[-3000:], done.stderr[-4000:])
    assert done.returncode == 0, f"lab compare exited {done.returncode}:\n{done.stderr[-3000:]}"
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_each_replica_stays_within_its_budget_and_its_throttling_is_reported(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    configs = summary["configs"]
    assert [(c["label"], c["cpus_per_replica"]) for c in configs] == [
        ("r1-c0.5-u8", BUDGET),
        ("r2-c0.5-u8", BUDGET),
    ]
    for config in configs:
        budget = config["cpu_budget"]
        assert budget is not None, config["label"]
        replicas = budget["replicas"]
        assert len(replicas) == config["replicas"]
        for replica in replicas:
            # The kernel's quota is the budget asked for; the mean over the window stays under it (+10 %).
            assert replica["budget_cores"] == pytest.approx(BUDGET)
            assert 0 < replica["mean_cores"] <= BUDGET * 1.1, replica
            assert replica["periods"] > 0 and replica["throttled_share"] is not None
            assert replica["throttled_s"] >= 0
            print(
                f"{config['label']} {replica['container']}: {replica['mean_cores']:.3f} of {BUDGET} cores, "
                f"throttled in {replica['throttled_share']:.1%} of {replica['periods']} periods, "
                f"{replica['throttled_s']:.2f} s; rps {config['rps']:.1f}, p95 {config['p95_ms']} ms, "
                f"p99 {config['p99_ms']} ms"
            )
        # The budget arithmetic the verdict uses: replicas x budget + what nginx and Locust used.
        expected = config["replicas"] * BUDGET + budget["others_cores"]
        assert budget["committed_cores"] == pytest.approx(expected, abs=0.002)
        assert budget["real"] is (expected <= summary["host_cpus"])
        assert ("budgets were not real" in summary["verdict"]) is any(
            c["cpu_budget"]["real"] is False for c in configs
        )
        print(f"{config['label']}: nginx + Locust {budget['others_cores']:.2f} cores, real {budget['real']}")
    print("verdict:", summary["verdict"])
    assert "### CPU budget" in (run_dir / "summary.md").read_text()
    lines = (run_dir / "01-r1-c0.5-u8" / "cgroup_cpu.jsonl").read_text().splitlines()
    assert lines and all("usage_s" in json.loads(line) for line in lines), lines[:3]


def test_the_replicas_ran_one_inference_thread_and_the_limit_is_gone_after(
    stack: Stack, run_dir: Path
) -> None:
    config = json.loads((run_dir / "01-r1-c0.5-u8" / "config.json").read_text())
    assert config["env_applied"]["CLASSIFIER_CPUS"] == "0.5"
    assert config["effective"]["cpus_per_replica"] == BUDGET
    # The replica's own answer: CLASSIFIER_THREADS=0 derived 1 thread from the 0.5-core budget.
    assert config["stack_after_setup"]["model"]["threads"]["intra_op"] == 1
    assert stack.health("classifier") == ["healthy"] * REPLICAS
    assert [int(n) for n in stack.inspect("classifier", "{{.HostConfig.NanoCpus}}")] == [0] * REPLICAS


def test_pin_is_refused_on_a_machine_without_the_cores(stack: Stack, run_dir: Path) -> None:
    done = _lab(stack, "--replicas", "1,2", "--cpus-per-replica", "0.5", "--pin", "--users", "8", timeout=120)
    cores = int(json.loads((run_dir / "run.json").read_text())["host_cpus"])
    if cores >= 3:
        pytest.skip(f"this machine has {cores} cores: --pin fits")
    assert done.returncode == 2, done.stderr
    assert "--pin needs 2 replica(s) x 1 core(s) + 1 core for nginx and Locust = 3 cores" in " ".join(
        done.stderr.split()
    )
