"""Summary numbers from golden result folders: equal to the CSVs, capacity, SLO, scaling, verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.grid import ExperimentSettings
from lab.summary import (
    Thresholds,
    build_summary,
    container_metrics,
    parse_cpu_pct,
    parse_mem_mb,
    unmet_reason,
)
from tests.lab.golden import Config, Measurement, classifier_samples, row_with, write_run

ISSUE_KEYS = {
    "replicas", "workers_per_replica", "backend", "batching", "users", "target_rps", "requests", "failures",
    "rps", "p50_ms", "p95_ms", "p99_ms", "server_queue_ms", "server_infer_ms", "cpu_cores_used", "mem_mb",
    "generator_cpu_max_pct", "slo_met",
}  # fmt: skip


def _closed(replicas: int, rps: float, p95: float, *, cpu_each: float = 60.0, worker_cpu: float = 40.0,
            failures: int = 0, **cfg: object) -> Config:  # fmt: skip
    row = row_with("/predict", int(rps * 20), rps, p95 / 3, p95, p95 * 1.5, failures=failures)
    m = Measurement(8, [row], docker=classifier_samples(replicas, cpu_each, worker_cpu=worker_cpu),
                    served_by={f"c{i}": row.requests // replicas for i in range(replicas)})  # fmt: skip
    return Config(replicas, [m], **cfg)  # type: ignore[arg-type]


def test_summary_keys_and_numbers_equal_the_csv(tmp_path: Path) -> None:
    fast = row_with("/predict", 1200, 60.0, 30, 90, 130, failures=6)
    m = Measurement(16, [fast], docker=classifier_samples(2, 70.0, samples=4), worker_cpu=[10.0, 55.5],
                    served_by={"a1b2": 600, "c3d4": 600})  # fmt: skip
    settings = ExperimentSettings(replicas=[2], users=[16], slo_p95_ms=100)
    run = write_run(
        tmp_path / "run", settings, [Config(2, [m], workers_per_replica=2, backend="tf", batching="off")]
    )
    summary = build_summary(run)
    assert {"run_id", "git_sha", "started_at", "settings", "configs", "capacity"} <= set(summary)
    (entry,) = summary["configs"]
    assert set(entry) >= ISSUE_KEYS
    assert entry["requests"] == 1200 and entry["failures"] == 6
    assert entry["rps"] == 60.0
    assert (entry["p50_ms"], entry["p95_ms"], entry["p99_ms"]) == (30, 90, 130)
    assert entry["failure_ratio"] == pytest.approx(0.005)
    assert (entry["server_queue_ms"], entry["server_infer_ms"]) == (1.5, 12.0)
    assert entry["server_other_ms"] == pytest.approx(19.0 - 1.5 - 4.0 - 12.0)
    assert entry["outside_server_ms"] == pytest.approx(fast.avg_ms - 19.0, abs=1e-3)
    assert entry["cpu_cores_used"] == pytest.approx(1.4)  # two replicas at 70 %
    assert entry["mem_mb"] == pytest.approx(601.0)
    assert entry["generator_cpu_max_pct"] == 55.5  # Locust's own report beat docker's 40 %
    assert entry["replicas_served"] == 2
    assert (entry["workers_per_replica"], entry["backend"], entry["batching"]) == (2, "tf", "off")
    assert entry["slo_met"] and summary["capacity"] == {"r2-w2-tf-nobatch": 60.0}


def test_docker_stats_parsing() -> None:
    assert parse_cpu_pct("123.45%") == 123.45 and parse_cpu_pct("--") is None
    assert parse_mem_mb("512MiB / 23.54GiB") == 512
    assert parse_mem_mb("1.5GiB / 23.54GiB") == 1536
    assert parse_mem_mb("800KiB / 1GiB") == pytest.approx(800 / 1024)
    assert parse_mem_mb("100MB / 1GB") == pytest.approx(100e6 / 2**20)
    assert parse_mem_mb("garbage") is None


def test_cpu_is_a_mean_over_times_of_the_replicas_sum() -> None:
    raw = [
        {
            "t": 1.0,
            "service": "classifier",
            "raw": {"Name": "c-1", "CPUPerc": "50%", "MemUsage": "100MiB / 1GiB"},
        },
        {
            "t": 1.0,
            "service": "classifier",
            "raw": {"Name": "c-2", "CPUPerc": "70%", "MemUsage": "100MiB / 1GiB"},
        },
        {
            "t": 3.0,
            "service": "classifier",
            "raw": {"Name": "c-1", "CPUPerc": "90%", "MemUsage": "150MiB / 1GiB"},
        },
        {
            "t": 3.0,
            "service": "classifier",
            "raw": {"Name": "c-2", "CPUPerc": "110%", "MemUsage": "100MiB / 1GiB"},
        },
        {
            "t": 3.0,
            "service": "locust-worker",
            "raw": {"Name": "w-1", "CPUPerc": "97%", "MemUsage": "9MiB / 1GiB"},
        },
        {"t": 5.0, "error": "docker stats timed out"},
    ]
    m = container_metrics(raw, host_cpus=2)
    assert m["cpu_cores_used"] == pytest.approx((1.2 + 2.0) / 2)
    assert m["mem_mb"] == 250
    assert m["cpu_by_container"] == {"c-1": 70.0, "c-2": 90.0, "w-1": 97.0}
    assert m["generator_cpu_docker_max_pct"] == 97.0
    assert m["machine_cpu_saturated"]  # 1.6 cores of 2 in the mean is below 85 %, but all containers: 2.97


def test_ramp_capacity_is_the_last_passing_step(tmp_path: Path) -> None:
    steps = [
        Measurement(8, [row_with("/predict", 1000, 50, 10, 40, 60)]),
        Measurement(16, [row_with("/predict", 1900, 95, 20, 60, 90)]),
        Measurement(
            24, [row_with("/predict", 2600, 130, 60, 150, 200)]
        ),  # p95 over the SLO: the knee is before
    ]
    settings = ExperimentSettings(replicas=[1], users=[8], ramp=True, slo_p95_ms=100)
    summary = build_summary(write_run(tmp_path / "run", settings, [Config(1, steps, ramp=True)]))
    assert [c["step"] for c in summary["configs"]] == [1, 2, 3]
    assert [c["slo_met"] for c in summary["configs"]] == [True, True, False]
    assert [c["label"] for c in summary["configs"]] == ["r1-u8", "r1-u16", "r1-u24"]
    assert summary["capacity"] == {"r1": 95.0}
    assert summary["knee"]["r1"] == {"users": 16, "target_rps": None, "rps": 95.0}
    assert summary["peak_rps"] == {"r1": 130.0}
    assert "p95 150 ms > 100 ms" in summary["configs"][2]["slo_reasons"][0]


def test_capacity_needs_every_repeat_and_takes_the_lowest(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1], users=[8, 16], repeat=2, slo_p95_ms=100)
    configs = [
        Config(1, [Measurement(8, [row_with("/p", 1000, 50, 10, 40, 60)])], repeat=1),
        Config(1, [Measurement(8, [row_with("/p", 960, 48, 10, 45, 60)])], repeat=2),
        Config(1, [Measurement(16, [row_with("/p", 1900, 95, 20, 60, 90)])], repeat=1),
        Config(1, [Measurement(16, [row_with("/p", 1950, 97, 20, 130, 190)])], repeat=2),  # a bad repeat
    ]
    summary = build_summary(write_run(tmp_path / "run", settings, configs))
    assert summary["capacity"] == {"r1": 48.0}
    assert summary["peak_rps"] == {"r1": 96.0}  # median of the two repeats at 16 users


def test_open_model_falling_behind_fails_the_slo(tmp_path: Path) -> None:
    behind = Measurement(50, [row_with("/predict", 1600, 80.0, 10, 40, 60)], target_rps=100.0)
    kept = Measurement(50, [row_with("/predict", 1990, 99.5, 10, 40, 60)], target_rps=100.0)
    settings = ExperimentSettings(replicas=[1, 2], rates=[100.0], slo_p95_ms=100)
    summary = build_summary(write_run(tmp_path / "run", settings, [Config(1, [behind]), Config(2, [kept])]))
    first, second = summary["configs"]
    assert first["achieved_ratio"] == 0.8 and first["fell_behind"] and not first["slo_met"]
    assert "achieved 80.0 of 100 req/s target (80%)" in first["slo_reasons"][0]
    assert not second["fell_behind"] and second["slo_met"]
    assert summary["capacity"] == {"r1": None, "r2": 99.5}
    assert "fell behind the target rate" in summary["verdict"]


def test_scaling_efficiency_recommendation_and_machine_limit(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1, 2, 4], users=[8], slo_p95_ms=100)
    configs = [
        _closed(1, 100.0, 150, cpu_each=95),  # misses the SLO
        _closed(2, 150.0, 80, cpu_each=85),  # 1.7 cores of 2: the machine is the limit
        _closed(4, 200.0, 60, cpu_each=45),
    ]
    summary = build_summary(write_run(tmp_path / "run", settings, configs))
    eff = summary["scaling_efficiency"]
    assert eff["r1"]["efficiency"] == 1.0
    assert eff["r2"]["efficiency"] == 0.75
    assert eff["r4"]["efficiency"] == 0.5
    assert summary["capacity"] == {"r1": None, "r2": 150.0, "r4": 200.0}
    rec = summary["recommended"]
    assert rec["label"] == "r2" and rec["capacity"] == 150.0  # fewest replicas meeting the SLO
    verdict = summary["verdict"]
    assert verdict.startswith("Recommended: r2")
    assert "the classifiers already used 1.70 of the machine's 2 cores" in verdict
    assert unmet_reason(summary) is None


def test_need_rps_picks_the_cheapest_config_that_serves_it(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1, 2, 4], users=[8], slo_p95_ms=100, need_rps=160)
    configs = [_closed(1, 100.0, 50), _closed(2, 150.0, 50), _closed(4, 200.0, 60)]
    summary = build_summary(write_run(tmp_path / "run", settings, configs))
    assert summary["recommended"]["label"] == "r4"
    summary = build_summary(tmp_path / "run", Thresholds(100, 0.01, need_rps=250))
    assert summary["recommended"] is None
    assert unmet_reason(summary) == "no configuration served 250 req/s within the thresholds"


def test_generator_saturation_and_failures_are_flagged(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[64], slo_p95_ms=500)
    configs = [_closed(1, 100.0, 80, worker_cpu=97.0), _closed(2, 110.0, 70, failures=500)]
    summary = build_summary(write_run(tmp_path / "run", settings, configs))
    first, second = summary["configs"]
    assert first["generator_saturated"] and first["generator_cpu_max_pct"] == 97.0
    assert not second["generator_saturated"]
    assert not second["slo_met"] and "failure ratio" in second["slo_reasons"][0]
    assert "A Locust worker went above 90 % CPU in r1-u8" in summary["verdict"]
    assert "Failures exceeded 1.0% in r2-u8" in summary["verdict"]


def test_no_config_meets_the_slo(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], slo_p95_ms=10)
    summary = build_summary(write_run(tmp_path / "run", settings, [_closed(1, 100, 50), _closed(2, 150, 40)]))
    assert summary["capacity"] == {"r1": None, "r2": None} and summary["recommended"] is None
    assert not summary["slo_met_by_any"]
    assert summary["verdict"].startswith("No configuration met p95 ≤ 10 ms and failures ≤ 1.0%")
    assert "lowest p95 was 40 ms (r2-u8" in summary["verdict"]
    reason = unmet_reason(summary)
    assert reason is not None and "r1-u8: p95 50 ms > 10 ms" in reason


def test_interrupted_measurement_is_reported_but_not_counted(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], slo_p95_ms=100)
    cut = _closed(2, 150.0, 50)
    cut.measurements[0].status = "interrupted"
    summary = build_summary(
        write_run(tmp_path / "run", settings, [_closed(1, 100, 50), cut], status="interrupted")
    )
    assert summary["configs"][1]["status"] == "interrupted" and not summary["configs"][1]["slo_met"]
    assert summary["capacity"] == {"r1": 100.0, "r2": None}
    assert summary["peak_rps"]["r2"] is None
    assert "Incomplete measurements (not counted): r2-u8" in summary["verdict"]


def test_missing_run_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a `lab compare` result folder"):
        build_summary(tmp_path)


def test_host_cpu_from_proc_stat(tmp_path: Path) -> None:
    from lab.sampler import HostCpu

    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal: 2 cores, the second reading 300 ticks later.
    stat.write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0\n")
    host = HostCpu(stat)
    stat.write_text("cpu  250 0 150 790 110 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0\n")
    # 300 ticks, of which 100 idle or iowait: two thirds of two cores busy.
    assert host() == [{"busy_cores": round(2 * 200 / 300, 3), "cores": 2}]
    assert HostCpu(tmp_path / "missing")() == []


def test_a_busy_machine_is_named_even_when_the_containers_look_idle(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1], users=[8])
    run = write_run(tmp_path / "run", settings, [_closed(1, 40.0, 300, cpu_each=50)])
    mdir = next(run.glob("01-*"))
    (mdir / "host_cpu.jsonl").write_text(
        '{"t": 1, "busy_cores": 1.9, "cores": 2}\n{"t": 3, "busy_cores": 1.95, "cores": 2}\n'
    )
    summary = build_summary(run)
    (entry,) = summary["configs"]
    assert entry["host_busy_cores"] == pytest.approx(1.925) and entry["machine_cpu_saturated"]
    assert "the machine's 2 cores were nearly all busy (up to 1.93 cores" in summary["verdict"]


def test_a_run_cut_before_any_measurement_ended_recommends_nothing(tmp_path: Path) -> None:
    cut = _closed(1, 100.0, 50)
    cut.measurements[0].status = "interrupted"
    run = write_run(
        tmp_path / "run", ExperimentSettings(replicas=[1], users=[8]), [cut], status="interrupted"
    )
    summary = build_summary(run)
    assert summary["recommended"] is None
    assert summary["verdict"].startswith("No measurement ran to its end")
