"""Summary numbers from golden result folders: equal to the CSVs, capacity, SLO, scaling, verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.capacity import Knee, analyse, recommend
from lab.grid import ExperimentSettings, StackConfig
from lab.limits import HOST_BUSY_FRACTION
from lab.locust_csv import parse_stats_csv, read_stats_csv
from lab.metrics import (
    ConfigResult,
    MeasurementData,
    MeasurementMetrics,
    Thresholds,
    evaluate,
    measurement_metrics,
)
from lab.report import render_markdown
from lab.results import MeasurementRecord
from lab.sampler import HostCpu
from lab.samples import container_metrics, parse_cpu_pct, parse_mem_mb
from lab.summary import build_summary, summarise
from tests.lab.golden import (
    Config,
    Measurement,
    arrivals_json,
    classifier_samples,
    records,
    row_with,
    stats_csv,
    write_run,
)

ISSUE_KEYS = {
    "replicas", "workers_per_replica", "backend", "batching", "users", "target_rps", "requests", "failures",
    "rps", "p50_ms", "p95_ms", "p99_ms", "server_queue_ms", "server_infer_ms", "cpu_cores_used", "mem_mb",
    "generator_cpu_max_pct", "slo_met",
}  # fmt: skip
MACHINE_SENTENCES = ("cores were nearly all busy", "so the machine, not the replica count, was the limit")


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
    as_json = summary.to_dict()
    assert {"run_id", "git_sha", "started_at", "settings", "configs", "capacity"} <= set(as_json)
    assert set(as_json["configs"][0]) >= ISSUE_KEYS
    assert json.loads(json.dumps(as_json)) == as_json  # plain JSON types only
    (entry,) = summary.configs
    m_ = entry.metrics
    assert m_.requests == 1200 and m_.failures == 6
    assert m_.rps == 60.0
    assert (m_.p50_ms, m_.p95_ms, m_.p99_ms) == (30, 90, 130)
    assert m_.failure_ratio == pytest.approx(0.005)
    assert (m_.server_queue_ms, m_.server_infer_ms, m_.server_total_ms) == (1.5, 12.0, 19.0)
    assert m_.server_total_p95_ms == 28.5
    assert m_.server_other_ms == pytest.approx(19.0 - 1.5 - 4.0 - 12.0)
    assert m_.outside_server_ms == pytest.approx(fast.avg_ms - 19.0, abs=1e-3)
    assert m_.cpu_cores_used == pytest.approx(1.4)  # two replicas at 70 %
    assert m_.mem_mb == pytest.approx(601.0)
    assert m_.generator_cpu_max_pct == 55.5  # Locust's own report beat docker's 40 %
    assert m_.replicas_served == 2
    assert (entry.workers_per_replica, entry.backend, entry.batching) == (2, "tf", "off")
    assert entry.slo_met and summary.analysis.capacity == {"r2-w2-tf-nobatch": 60.0}


def test_percentiles_are_locusts_aggregated_row_not_a_mix_of_rows(tmp_path: Path) -> None:
    # Two request names with different latencies: Locust's Aggregated row (its merged histogram) is the
    # truth, whatever a mix of the rows' own percentiles would give.
    fast = row_with("/predict", 900, 45.0, 10, 20, 30)
    slow = row_with("/predict/tf", 100, 5.0, 100, 200, 300)
    aggregated = [11, 12, 14, 15, 18, 130, 190, 240, 290, 300, 300]
    m = Measurement(8, [fast, slow], aggregated=aggregated)
    run = write_run(tmp_path / "run", ExperimentSettings(replicas=[1], users=[8]), [Config(1, [m])])
    (entry,) = build_summary(run).configs
    total = read_stats_csv(next(run.glob("01-*")) / "stats.csv").aggregated
    assert total is not None and total.name == "Aggregated"
    got = (entry.metrics.p50_ms, entry.metrics.p95_ms, entry.metrics.p99_ms)
    assert got == (total.percentile(0.5), total.percentile(0.95), total.percentile(0.99)) == (11, 130, 240)
    assert (entry.metrics.requests, entry.metrics.rps) == (total.requests, total.rps) == (1000, 50.0)
    assert entry.metrics.avg_ms == pytest.approx(total.avg_ms, abs=0.005)
    assert entry.metrics.requests_by_name == {"POST /predict": 900, "POST /predict/tf": 100}


def test_server_split_with_a_stage_only_some_requests_have() -> None:
    # /predict/tf fetches its image by URL: `fetch` on a quarter of the requests only.
    rows = [row_with("/predict", 300, 15.0, 20, 40, 60), row_with("/predict/tf", 100, 5.0, 30, 50, 70)]

    def stage(count: int, mean: float) -> dict[str, float]:
        return {"count": count, "mean_ms": mean, "p50_ms": mean, "p95_ms": mean, "p99_ms": mean}

    timing = {
        "stages": {"queue": stage(400, 1.0), "fetch": stage(100, 8.0), "decode": stage(400, 3.0),
                   "infer": stage(400, 10.0), "total": stage(400, 17.0)},
        "by_name": {},
    }  # fmt: skip
    m = Measurement(8, rows, aggregated=[22] * 11, server_timing=timing)
    metrics = (
        summarise(*records(ExperimentSettings(replicas=[1], users=[8]), [Config(1, [m])])).configs[0].metrics
    )
    assert metrics.server_fetch_ms == 8.0  # the mean over the requests that fetched
    assert metrics.server_split_ms == {"fetch": 2.0, "queue": 1.0, "decode": 3.0, "infer": 10.0}
    assert metrics.server_other_ms == 1.0  # 17 - (2 + 1 + 3 + 10): the parts add up to the mean total


def test_no_server_timing_file_leaves_the_server_columns_empty(tmp_path: Path) -> None:
    # A master without GET /server-timing (404): `lab compare` saved no file.
    m = Measurement(8, [row_with("/predict", 100, 5.0, 10, 20, 30)], server_ms=None)
    run = write_run(tmp_path / "run", ExperimentSettings(replicas=[1], users=[8]), [Config(1, [m])])
    metrics = build_summary(run).configs[0].metrics
    assert not (next(run.glob("01-*")) / "server_timing.json").exists()
    assert metrics.requests == 100 and metrics.p95_ms == 20
    assert (metrics.server_total_ms, metrics.server_infer_ms, metrics.outside_server_ms) == (None, None, None)
    assert metrics.server_split_ms == {}


def test_docker_stats_parsing() -> None:
    assert parse_cpu_pct("123.45%") == 123.45 and parse_cpu_pct("--") is None
    assert parse_mem_mb("512MiB / 23.54GiB") == 512
    assert parse_mem_mb("1.5GiB / 23.54GiB") == 1536
    assert parse_mem_mb("800KiB / 1GiB") == pytest.approx(800 / 1024)
    assert parse_mem_mb("100MB / 1GB") == pytest.approx(100e6 / 2**20)
    assert parse_mem_mb("garbage") is None


def test_cpu_is_a_mean_over_times_of_the_replicas_sum() -> None:
    def line(t: float, service: str, name: str, cpu: str, mem: str) -> dict:
        return {"t": t, "service": service, "raw": {"Name": name, "CPUPerc": cpu, "MemUsage": mem}}

    raw = [
        line(1.0, "classifier", "c-1", "50%", "100MiB / 1GiB"),
        line(1.0, "classifier", "c-2", "70%", "100MiB / 1GiB"),
        line(3.0, "classifier", "c-1", "90%", "150MiB / 1GiB"),
        line(3.0, "classifier", "c-2", "110%", "100MiB / 1GiB"),
        line(3.0, "locust-worker", "w-1", "97%", "9MiB / 1GiB"),
        {"t": 5.0, "error": "docker stats timed out"},
    ]
    m = container_metrics(raw)
    assert m.cpu_cores_used == pytest.approx((1.2 + 2.0) / 2)
    assert m.mem_mb == 250
    assert m.cpu_by_container == {"c-1": 70.0, "c-2": 90.0, "w-1": 97.0}
    assert m.generator_cpu_max_pct == 97.0
    # 1.6 cores of 2 in the mean is below 85 %, but all containers together: 2.97 cores.
    assert m.machine_saturated(host_cpus=2) and not m.machine_saturated(host_cpus=4)
    assert container_metrics([]).cpu_cores_used is None and not container_metrics([]).machine_saturated(1)


def test_ramp_capacity_is_the_last_passing_step() -> None:
    steps = [
        Measurement(8, [row_with("/predict", 1000, 50, 10, 40, 60)]),
        Measurement(16, [row_with("/predict", 1900, 95, 20, 60, 90)]),
        # p95 over the SLO: the knee is before
        Measurement(24, [row_with("/predict", 2600, 130, 60, 150, 200)]),
    ]
    settings = ExperimentSettings(replicas=[1], users=[8], ramp=True, slo_p95_ms=100)
    summary = summarise(*records(settings, [Config(1, steps, ramp=True)]))
    assert [c.step for c in summary.configs] == [1, 2, 3]
    assert [c.slo_met for c in summary.configs] == [True, True, False]
    assert [c.label for c in summary.configs] == ["r1-u8", "r1-u16", "r1-u24"]
    assert summary.analysis.capacity == {"r1": 95.0}
    assert summary.analysis.knee["r1"] == Knee(16, None, 95.0)
    assert summary.to_dict()["knee"]["r1"] == {"users": 16, "target_rps": None, "rps": 95.0}
    assert summary.analysis.peak_rps == {"r1": 130.0}
    assert "p95 150 ms > 100 ms" in summary.configs[2].slo_reasons[0]


def test_capacity_needs_every_repeat_and_takes_the_lowest() -> None:
    settings = ExperimentSettings(replicas=[1], users=[8, 16], repeat=2, slo_p95_ms=100)
    configs = [
        Config(1, [Measurement(8, [row_with("/p", 1000, 50, 10, 40, 60)])], repeat=1),
        Config(1, [Measurement(8, [row_with("/p", 960, 48, 10, 45, 60)])], repeat=2),
        Config(1, [Measurement(16, [row_with("/p", 1900, 95, 20, 60, 90)])], repeat=1),
        Config(1, [Measurement(16, [row_with("/p", 1950, 97, 20, 130, 190)])], repeat=2),  # a bad repeat
    ]
    summary = summarise(*records(settings, configs))
    assert summary.analysis.capacity == {"r1": 48.0}
    assert summary.analysis.peak_rps == {"r1": 96.0}  # median of the two repeats at 16 users


def test_open_model_falling_behind_fails_the_slo() -> None:
    behind = Measurement(50, [row_with("/predict", 1600, 80.0, 10, 40, 60)], target_rps=100.0)
    kept = Measurement(50, [row_with("/predict", 1990, 99.5, 10, 40, 60)], target_rps=100.0)
    settings = ExperimentSettings(replicas=[1, 2], rates=[100.0], slo_p95_ms=100)
    summary = summarise(*records(settings, [Config(1, [behind]), Config(2, [kept])]))
    first, second = summary.configs
    assert first.metrics.achieved_ratio == 0.8 and first.metrics.fell_behind and not first.slo_met
    assert "achieved 80.0 of 100 req/s target (80%)" in first.slo_reasons[0]
    assert not second.metrics.fell_behind and second.slo_met
    assert summary.analysis.capacity == {"r1": None, "r2": 99.5}
    assert "fell behind the target rate" in summary.verdict


def test_arrivals_late_dropped_and_spread_per_measurement() -> None:
    # Locust's rps counts the start-up before the first arrival (29.0 here); the sends' own rate is 30.1.
    rare = Measurement(
        30,
        [row_with("/predict", 1740, 29.0, 10, 40, 60)],
        target_rps=30.0,
        arrivals=arrivals_json(30.0, 1740, late=2, dropped=0, achieved_rps=30.1, cv=1.01),
    )
    crowded = Measurement(
        30,
        [row_with("/predict", 1700, 28.5, 10, 40, 60)],
        target_rps=30.0,
        arrivals=arrivals_json(30.0, 1700, late=90, dropped=40, achieved_rps=29.0, cv=1.1),
    )
    settings = ExperimentSettings(replicas=[1, 2], rates=[30.0], slo_p95_ms=100)
    summary = summarise(*records(settings, [Config(1, [rare]), Config(2, [crowded])]))
    first, second = summary.configs
    m = first.metrics
    assert (m.arrivals, m.arrivals_late, m.arrivals_dropped, m.interarrival_cv) == ("poisson", 2, 0, 1.01)
    assert m.achieved_ratio == round(30.1 / 30, 4) and not m.fell_behind and first.slo_met
    assert m.arrivals_late_share == round(2 / 1740, 4) and not m.too_few_users
    assert (m.arrival_rps, m.max_sends_per_100ms, m.lagging_sends) == (30.1, 9, 3)
    assert second.metrics.too_few_users and second.metrics.arrivals_late_share == round(130 / 1740, 4)
    assert "up to 7.5% of the arrivals found no user free" in summary.verdict
    table = render_markdown(summary)
    assert "| 1.01 | 2 / 0 |" in table and "| 1.10 | 90 / 40 ⚠ |" in table
    entry = summary.to_dict()["configs"][1]
    assert (entry["arrivals_late"], entry["arrivals_dropped"], entry["interarrival_cv"]) == (90, 40, 1.1)


def test_closed_model_arrivals_have_a_spread_but_no_lateness() -> None:
    m = Measurement(
        8,
        [row_with("/predict", 600, 30.0, 10, 40, 60)],
        arrivals=arrivals_json(None, 600, late=0, dropped=0, achieved_rps=30.2, cv=0.4),
    )
    metrics = (
        summarise(*records(ExperimentSettings(replicas=[1], users=[8]), [Config(1, [m])])).configs[0].metrics
    )
    assert metrics.interarrival_cv == 0.4 and metrics.arrival_rps == 30.2
    assert metrics.arrivals is None and metrics.arrivals_late is None and metrics.achieved_ratio is None
    assert not metrics.too_few_users


def test_scaling_efficiency_recommendation_and_machine_limit() -> None:
    settings = ExperimentSettings(replicas=[1, 2, 4], users=[8], slo_p95_ms=100)
    configs = [
        _closed(1, 100.0, 150, cpu_each=95),  # misses the SLO
        _closed(2, 150.0, 80, cpu_each=85),  # 1.7 cores of 2: the machine is the limit
        _closed(4, 200.0, 60, cpu_each=45),
    ]
    summary = summarise(*records(settings, configs))
    eff = summary.analysis.scaling_efficiency
    assert (eff["r1"].efficiency, eff["r2"].efficiency, eff["r4"].efficiency) == (1.0, 0.75, 0.5)
    assert summary.analysis.capacity == {"r1": None, "r2": 150.0, "r4": 200.0}
    rec = summary.analysis.recommended
    assert rec is not None and rec.label == "r2" and rec.capacity == 150.0  # fewest replicas meeting the SLO
    assert summary.verdict.startswith("Recommended: r2")
    assert "the classifiers already used 1.70 of the machine's 2 cores" in summary.verdict
    assert summary.unmet_reason() is None


def test_machine_saturation_is_said_once_decided_on_the_numbers() -> None:
    # The machine is busy in every measurement. When a scaling sentence already says so (the replicas used
    # the cores), the saturation sentence is not added; when none can (one replica count), it is. Either
    # way the verdict names the machine exactly once.
    settings = ExperimentSettings(replicas=[1, 2], users=[8], slo_p95_ms=100)
    scaling = [_closed(1, 100.0, 80, cpu_each=190), _closed(2, 120.0, 70, cpu_each=95)]
    summary = summarise(*records(settings, scaling))
    assert all(c.metrics.machine_cpu_saturated for c in summary.configs)
    assert [summary.verdict.count(s) for s in MACHINE_SENTENCES] == [0, 1]

    single = ExperimentSettings(replicas=[1], users=[8], slo_p95_ms=100)
    summary = summarise(*records(single, [_closed(1, 100.0, 80, cpu_each=190)]))
    assert summary.configs[0].metrics.machine_cpu_saturated
    assert [summary.verdict.count(s) for s in MACHINE_SENTENCES] == [1, 0]


def test_need_rps_picks_the_cheapest_config_that_serves_it() -> None:
    settings = ExperimentSettings(replicas=[1, 2, 4], users=[8], slo_p95_ms=100, need_rps=160)
    configs = [_closed(1, 100.0, 50), _closed(2, 150.0, 50), _closed(4, 200.0, 60)]
    summary = summarise(*records(settings, configs))
    assert summary.analysis.recommended is not None and summary.analysis.recommended.label == "r4"
    summary = summarise(*records(settings, configs), Thresholds(100, 0.01, need_rps=250))
    assert summary.analysis.recommended is None
    assert summary.unmet_reason() == "no configuration served 250 req/s within the thresholds"


def test_ramp_recommends_among_the_near_best_capacities() -> None:
    # Without --need-rps a ramp does not pick r1 for being cheap: only r2 and r4 are within 5 % of the best.
    settings = ExperimentSettings(replicas=[1, 2, 4], users=[8], ramp=True, slo_p95_ms=100)

    def ramp(replicas: int, rps: float) -> Config:
        return Config(replicas, [Measurement(8, [row_with("/predict", 1000, rps, 10, 50, 80)])], ramp=True)

    summary = summarise(*records(settings, [ramp(1, 100), ramp(2, 195), ramp(4, 200)]))
    rec = summary.analysis.recommended
    assert rec is not None and (rec.label, rec.capacity) == ("r2", 195.0)
    assert "within 5%" in rec.why


def test_generator_saturation_and_failures_are_flagged() -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[64], slo_p95_ms=500)
    configs = [_closed(1, 100.0, 80, worker_cpu=97.0), _closed(2, 110.0, 70, failures=500)]
    summary = summarise(*records(settings, configs))
    first, second = summary.configs
    assert first.metrics.generator_saturated and first.metrics.generator_cpu_max_pct == 97.0
    assert not second.metrics.generator_saturated
    assert not second.slo_met and "failure ratio" in second.slo_reasons[0]
    assert "A Locust worker went above 90 % CPU in r1-u8" in summary.verdict
    assert "Failures exceeded 1.0% in r2-u8" in summary.verdict


def test_no_config_meets_the_slo() -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], slo_p95_ms=10)
    summary = summarise(*records(settings, [_closed(1, 100, 50), _closed(2, 150, 40)]))
    assert summary.analysis.capacity == {"r1": None, "r2": None} and summary.analysis.recommended is None
    assert not summary.slo_met_by_any
    assert summary.verdict.startswith("No configuration met p95 ≤ 10 ms and failures ≤ 1.0%")
    assert "lowest p95 was 40 ms (r2-u8" in summary.verdict
    reason = summary.unmet_reason()
    assert reason is not None and "r1-u8: p95 50 ms > 10 ms" in reason


def test_interrupted_measurement_is_reported_but_not_counted() -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], slo_p95_ms=100)
    cut = _closed(2, 150.0, 50)
    cut.measurements[0].status = "interrupted"
    summary = summarise(*records(settings, [_closed(1, 100, 50), cut], status="interrupted"))
    assert summary.configs[1].metrics.status == "interrupted" and not summary.configs[1].slo_met
    assert summary.analysis.capacity == {"r1": 100.0, "r2": None}
    assert summary.analysis.peak_rps["r2"] is None
    assert "Incomplete measurements (not counted): r2-u8" in summary.verdict


def test_missing_run_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a `lab compare` result folder"):
        build_summary(tmp_path)


def test_host_cpu_is_psutils_busy_share_of_the_machine() -> None:
    host = HostCpu()
    assert host() == []  # the first call only starts psutil's count for this thread
    sum(i * i for i in range(200_000))  # some work in between
    ((sample,),) = [host()]
    assert sample["cores"] >= 1 and 0.0 <= sample["busy_cores"] <= sample["cores"]


def test_a_busy_machine_is_named_even_when_the_containers_look_idle(tmp_path: Path) -> None:
    settings = ExperimentSettings(replicas=[1], users=[8])
    run = write_run(tmp_path / "run", settings, [_closed(1, 40.0, 300, cpu_each=50)])
    mdir = next(run.glob("01-*"))
    (mdir / "host_cpu.jsonl").write_text(
        '{"t": 1, "busy_cores": 1.9, "cores": 2}\n{"t": 3, "busy_cores": 1.95, "cores": 2}\n'
    )
    summary = build_summary(run)
    (entry,) = summary.configs
    assert entry.metrics.host_busy_cores == pytest.approx(1.925)
    assert entry.metrics.host_busy_cores >= HOST_BUSY_FRACTION * 2 > (entry.metrics.total_cores_used or 0)
    assert entry.metrics.machine_cpu_saturated
    assert "the machine's 2 cores were nearly all busy (up to 1.93 cores" in summary.verdict


def test_a_run_cut_before_any_measurement_ended_recommends_nothing() -> None:
    cut = _closed(1, 100.0, 50)
    cut.measurements[0].status = "interrupted"
    summary = summarise(*records(ExperimentSettings(replicas=[1], users=[8]), [cut], status="interrupted"))
    assert summary.analysis.recommended is None
    assert summary.verdict.startswith("No measurement ran to its end")


# ---- the analysis on records, without a run folder -----------------------------------------------------


def _metrics(
    users: int, rps: float, p95: float, status: str = "complete", **fields: object
) -> MeasurementMetrics:
    return MeasurementMetrics(
        dir="m", users=users, target_rps=None, status=status, duration_s=20.0, requests=int(rps * 20),
        rps=rps, p95_ms=p95, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def _judged(
    replicas: int, users: int, rps: float, p95: float, *, workers: int | None = None, repeat: int = 1,
    step: int | None = None, slo: float = 100,
) -> ConfigResult:  # fmt: skip
    metrics = _metrics(users, rps, p95)
    ok, reasons = evaluate(metrics, Thresholds(slo, 0.01))
    stack = StackConfig(replicas, workers)
    return ConfigResult(
        label=f"{stack.label}-u{users}", stack_label=stack.label, config_dir="01", replicas=replicas,
        workers_per_replica=workers, backend=None, batching=None, mode="closed", repeat=repeat, step=step,
        metrics=metrics, slo_met=ok, slo_reasons=reasons,
    )  # fmt: skip


def test_measurement_metrics_from_records_alone() -> None:
    row = row_with("/predict", 400, 20.0, 10, 40, 60, failures=4)
    data = MeasurementData(
        dir="step-02",
        record=MeasurementRecord(users=8, status="complete", duration_s=20.0, t_start=100.0, t_end=119.5),
        stats=parse_stats_csv(stats_csv([row])),
        served_by={"a": 396, "b": 0},
    )
    m = measurement_metrics(data, host_cpus=2, replicas=2)
    assert (m.dir, m.users, m.duration_s, m.requests, m.failure_ratio) == ("step-02", 8, 19.5, 400, 0.01)
    assert (m.p95_ms, m.rps, m.replicas_served) == (40, 20.0, 1)
    assert m.server_total_ms is None and m.cpu_cores_used is None and m.achieved_ratio is None
    # A measurement whose file never got written is "missing" and fails, whatever its numbers.
    missing = measurement_metrics(MeasurementData("step-03", MeasurementRecord()), host_cpus=2)
    assert evaluate(missing, Thresholds(None, 0.01)) == (False, ["measurement missing", "no requests"])


def test_analyse_takes_the_lowest_repeat_at_the_best_level_met_in_every_repeat() -> None:
    configs = [
        _judged(1, 8, 50, 40, repeat=1), _judged(1, 8, 48, 45, repeat=2),
        _judged(1, 16, 95, 60, repeat=1), _judged(1, 16, 97, 130, repeat=2),  # the second repeat misses
        _judged(2, 8, 90, 30, repeat=1),  # r2's only level meets the SLO in r2's first repeat only
        _judged(2, 16, 99, 40, repeat=2),
    ]  # fmt: skip
    analysis = analyse(configs, Thresholds(100, 0.01), ramp=False)
    assert analysis.capacity == {"r1": 48.0, "r2": None}
    assert analysis.knee["r1"] == Knee(8, None, 48.0) and analysis.knee["r2"] is None
    assert analysis.peak_rps == {"r1": 96.0, "r2": 99.0}


def test_recommend_fewest_processes_then_fewest_replicas_then_capacity() -> None:
    configs = [_judged(2, 8, 100, 50, workers=1), _judged(1, 8, 90, 50, workers=2), _judged(4, 8, 200, 50)]
    capacity = {"r2-w1": 100.0, "r1-w2": 90.0, "r4": 200.0}
    rec = recommend(configs, capacity, Thresholds(100, 0.01), ramp=False)
    assert rec is not None and (rec.label, rec.replicas, rec.workers_per_replica) == ("r1-w2", 1, 2)
    need = recommend(configs, capacity, Thresholds(100, 0.01, need_rps=150), ramp=False)
    assert need is not None and need.label == "r4" and "serves 150 req/s" in need.why
    assert recommend(configs, {"r4": None}, Thresholds(100, 0.01), ramp=False) is None
