"""End to end: `lab compare --cpus-per-replica 0.5 --repeat 3` on the real compose stack. Each replica runs
under a 0.5-core CFS quota with one inference thread; the summary holds its CPU against the budget and its
throttling from the cgroup; the rounds are interleaved, and the r2/r1 ratio is printed with the interval
that the per-run numbers in Locust's own CSVs give; afterwards the replicas run without a limit again.
`--until-stable` records when a measurement settled. `--pin` is refused where the machine lacks the cores.

What is asserted is structure and arithmetic, never the machine's speed: the numbers are printed."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from lab.intervals import mean_interval, ratio_interval
from lab.rounds import RoundOrder
from lab.stability import StabilityRule, WindowPoint, judge
from tests.e2e.compose import Stack
from tests.e2e.conftest import REPLICAS, LabCompare, LabRun, run_lab

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUDGET = 0.5
ROUNDS = 3
CONFIGS = ["r1-c0.5-u8", "r2-c0.5-u8"]
STABLE_WINDOW_S, STABLE_MAX_S = 3, 24


@pytest.fixture(scope="module")
def budget_run(lab_compare: LabCompare) -> LabRun:
    # Short measurements for CI (6 of them): the README's numbers come from longer ones.
    return lab_compare(
        "budget", "--replicas", "1,2", "--cpus-per-replica", str(BUDGET), "--users", "8",
        "--repeat", str(ROUNDS), "--duration", "12s", "--warmup", "3s",
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(budget_run: LabRun) -> Path:
    return budget_run.run_dir


def _locust_rps(folder: Path) -> float:
    """A measurement's throughput from Locust's own Aggregated row (no lab code), to the 3 decimals the lab
    keeps of it."""
    with (folder / "stats.csv").open() as f:
        (row,) = [r for r in csv.DictReader(f) if r["Type"] == "" and r["Name"] == "Aggregated"]
    return round(float(row["Requests/s"]), 3)


def _runs(run_dir: Path) -> dict[str, list[float]]:
    """Per configuration, each round's throughput in round order, from the measurement folders."""
    by_round: dict[str, dict[int, float]] = defaultdict(dict)
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        config = json.loads((folder / "config.json").read_text())
        stem = re.sub(r"-rep\d+$", "", config["label"])
        by_round[stem][config["repeat"]] = _locust_rps(folder)
    return {label: [rounds[k] for k in sorted(rounds)] for label, rounds in by_round.items()}


def test_the_rounds_are_interleaved_as_run_json_records(run_dir: Path) -> None:
    run = json.loads((run_dir / "run.json").read_text())
    order = run["order"]
    assert (order["kind"], order["rounds"]) == ("rotate", ROUNDS)
    measured = [entry["label"] for entry in run["plan"]]
    print("order measured:", measured)
    # Round k holds every configuration exactly once, and the recorded order and seed reproduce the plan.
    rounds: dict[int, list[str]] = defaultdict(list)
    for label in measured:
        stem, _, k = label.rpartition("-rep")
        rounds[int(k)].append(stem)
    assert sorted(rounds) == list(range(1, ROUNDS + 1))
    assert all(sorted(members) == CONFIGS for members in rounds.values()), rounds
    arranged = RoundOrder.from_dict(order).arrange(CONFIGS)
    assert measured == [f"{label}-rep{k}" for k, label in arranged]
    # The folders on disk were measured in that order.
    folders = sorted(p.name for p in run_dir.iterdir() if p.is_dir())
    assert folders == [entry["dir"] for entry in run["plan"]]
    starts = [json.loads((run_dir / d / "config.json").read_text())["started_at"] for d in folders]
    assert starts == sorted(starts)


def test_the_ratio_is_printed_with_the_interval_of_the_per_run_numbers(budget_run: LabRun) -> None:
    runs = _runs(budget_run.run_dir)
    r1, r2 = runs["r1-c0.5-u8"], runs["r2-c0.5-u8"]
    assert len(r1) == len(r2) == ROUNDS
    expected = ratio_interval(r2, r1)
    print(f"r1 runs {r1} -> {mean_interval(r1).text('req/s')}")
    print(f"r2 runs {r2} -> {mean_interval(r2).text('req/s')}")
    print(f"r2/r1: {expected.text()}")
    assert expected.has_interval and expected.df is not None
    assert (
        f"From r1-c0.5 to r2-c0.5, throughput went from {sum(r1) / ROUNDS:.1f} to {sum(r2) / ROUNDS:.1f}"
        in budget_run.said
    )
    assert f": {expected.text()}, scaling efficiency" in budget_run.said
    summary = json.loads((budget_run.run_dir / "summary.json").read_text())
    repeats = summary["repeats"]
    assert repeats["peak_runs"] == {"r1-c0.5": r1, "r2-c0.5": r2}
    (scaling,) = repeats["comparisons"]
    assert (scaling["a"], scaling["b"]) == ("r2-c0.5", "r1-c0.5")
    for key in ("ratio", "low", "high", "df"):
        assert scaling["ratio"][key] == pytest.approx(getattr(expected, key), rel=1e-9), key
    spreads = {c["label"]: c for c in repeats["configs"]}
    for label, values in runs.items():
        interval = mean_interval(values, floor=0.0)
        assert spreads[label]["runs"] == ROUNDS
        for key in ("mean", "low", "high"):
            assert spreads[label]["rps"][key] == pytest.approx(getattr(interval, key), rel=1e-9), key
    assert "95% CI" in (budget_run.run_dir / "summary.md").read_text()


def _first_r1(run_dir: Path) -> str:
    plan = json.loads((run_dir / "run.json").read_text())["plan"]
    return next(entry["dir"] for entry in plan if entry["label"].startswith("r1-"))


def test_each_replica_stays_within_its_budget_and_its_throttling_is_reported(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    configs = summary["configs"]
    assert sorted((c["label"], c["cpus_per_replica"]) for c in configs) == [
        (f"{label}-rep{k}", BUDGET) for label in CONFIGS for k in range(1, ROUNDS + 1)
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
    lines = (run_dir / _first_r1(run_dir) / "cgroup_cpu.jsonl").read_text().splitlines()
    assert lines and all("usage_s" in json.loads(line) for line in lines), lines[:3]


def test_the_replicas_ran_one_inference_thread_and_the_limit_is_gone_after(
    stack: Stack, run_dir: Path
) -> None:
    config = json.loads((run_dir / _first_r1(run_dir) / "config.json").read_text())
    assert config["env_applied"]["CLASSIFIER_CPUS"] == "0.5"
    assert config["effective"]["cpus_per_replica"] == BUDGET
    # The replica's own answer: CLASSIFIER_THREADS=0 derived 1 thread from the 0.5-core budget.
    assert config["stack_after_setup"]["model"]["threads"]["intra_op"] == 1
    assert stack.health("classifier") == ["healthy"] * REPLICAS
    assert [int(n) for n in stack.inspect("classifier", "{{.HostConfig.NanoCpus}}")] == [0] * REPLICAS


def test_pin_is_refused_on_a_machine_without_the_cores(stack: Stack, run_dir: Path) -> None:
    done = run_lab(
        stack,
        "compare",
        "--replicas",
        "1,2",
        "--cpus-per-replica",
        "0.5",
        "--pin",
        "--users",
        "8",
        timeout=120,
    )
    cores = int(json.loads((run_dir / "run.json").read_text())["host_cpus"])
    if cores >= 3:
        pytest.skip(f"this machine has {cores} cores: --pin fits")
    assert done.returncode == 2, done.stderr
    assert "--pin needs 2 replica(s) x 1 core(s) + 1 core for nginx and Locust = 3 cores" in " ".join(
        done.stderr.split()
    )


@pytest.fixture(scope="module")
def stable_run(lab_compare: LabCompare) -> LabRun:
    # The stack's own 2 replicas without a budget: no container is recreated, the measurement is all.
    return lab_compare(
        "stable", "--replicas", str(REPLICAS), "--users", "8", "--until-stable",
        "--window", str(STABLE_WINDOW_S), "--duration", f"{STABLE_MAX_S}s", "--warmup", "3s",
    )  # fmt: skip


def test_until_stable_records_when_the_measurement_settled(stable_run: LabRun) -> None:
    (folder,) = [p for p in stable_run.run_dir.iterdir() if p.is_dir()]
    measurement = json.loads((folder / "measurement.json").read_text())
    record = measurement["stability"]
    rule = StabilityRule(**record["rule"])
    assert rule == StabilityRule(window_s=STABLE_WINDOW_S)
    windows = [WindowPoint(**w) for w in record["windows"]]
    print(f"stable {record['stable']} after {record['settled_after_s']} s; windows {windows}")
    # The record is the rule applied to the windows it keeps: settled at the first k windows that agree.
    again = judge(windows, rule)
    assert (again.stable, again.settled_after_s) == (record["stable"], record["settled_after_s"])
    measured_s = measurement["t_end"] - measurement["t_start"]
    if record["stable"]:
        k = round(record["settled_after_s"] / STABLE_WINDOW_S)
        assert k == len(windows) >= rule.windows
        tail = windows[-rule.windows :]
        for values in ([w.rps for w in tail], [w.p95_ms for w in tail]):
            mean = sum(values) / len(values)
            assert all(abs(v - mean) <= 0.10 * mean for v in values), values
        # It stopped once settled: before the longest allowed, at least the windows it judged.
        assert record["settled_after_s"] <= measured_s < STABLE_MAX_S + 2
        summary_text = (stable_run.run_dir / "summary.md").read_text()
        assert f"(stable after {record['settled_after_s']:g} s)" in summary_text
    else:
        assert measured_s >= STABLE_MAX_S - 1
        assert "Never stable" in stable_run.said
