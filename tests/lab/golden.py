"""Small result folders shaped like `lab compare`'s, written by the tests (no Docker, no Locust), through
the same records the driver writes (lab/results.py); `records()` gives them without the disk.

The CSV headers are copied from real Locust 2.47.0 output (a master's /stats/requests/csv and
/stats/failures/csv); the docker-stats lines have the fields and formats `docker stats --format
'{{json .}}'` printed on this machine's Docker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import results
from lab.arrivals import parse_arrivals
from lab.grid import ExperimentSettings, LoadLevel, StackConfig, config_label
from lab.locust_csv import parse_stats_csv
from lab.metrics import MeasurementData
from lab.results import ConfigRecord, Effective, MeasurementRecord, RunRecord, ServedModel, write_record
from lab.server_timing import parse_server_timing

STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
    "99.99%,100%"
)
FAILURES_HEADER = "Method,Name,Error,Occurrences,First Seen,Last Seen"
PERCENTILES = (0.5, 0.66, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0)


@dataclass
class Row:
    """One traffic row of a Locust stats CSV; `percentiles` in the header's order (11 values)."""

    name: str
    requests: int
    failures: int
    avg_ms: float
    min_ms: float
    max_ms: float
    rps: float
    percentiles: list[float]
    method: str = "POST"

    def csv(self) -> str:
        fps = self.rps * self.failures / self.requests if self.requests else 0.0
        cells = [
            self.method, self.name, self.requests, self.failures, self.percentiles[0], self.avg_ms,
            self.min_ms, self.max_ms, 99.0, self.rps, fps, *self.percentiles,
        ]  # fmt: skip
        return ",".join(str(c) for c in cells)


def row_with(
    name: str, requests: int, rps: float, p50: float, p95: float, p99: float, failures: int = 0
) -> Row:
    """A plausible row whose p50/p95/p99 are exactly the given values."""
    pct = [p50, p50 * 1.1, p50 * 1.2, p50 * 1.3, (p50 + p95) / 2, p95, (p95 + p99) / 2, p99, p99 * 1.2,
           p99 * 1.3, p99 * 1.3]  # fmt: skip
    pct = [round(v) if v >= 10 else v for v in pct]
    pct[0], pct[5], pct[7] = p50, p95, p99
    return Row(name, requests, failures, round(p50 * 1.1, 3), round(p50 / 3, 3), pct[-1], rps, pct)


def aggregated_row(traffic: list[Row], percentiles: list[float] | None = None) -> Row:
    """Locust's Aggregated row over `traffic`: summed counts and rates, the request-weighted mean, and
    `percentiles` (Locust's merged histogram; a test with several rows gives them, one row: its own)."""
    if percentiles is None:
        if len(traffic) != 1:
            raise ValueError("several rows: give the Aggregated percentiles Locust would have merged")
        percentiles = traffic[0].percentiles
    requests = sum(r.requests for r in traffic)
    avg = sum(r.avg_ms * r.requests for r in traffic) / requests if requests else 0.0
    return Row(
        "Aggregated", requests, sum(r.failures for r in traffic), avg, min(r.min_ms for r in traffic),
        max(r.max_ms for r in traffic), sum(r.rps for r in traffic), list(percentiles), method="",
    )  # fmt: skip


def stats_csv(traffic: list[Row], aggregated: list[float] | None = None) -> str:
    """A stats CSV as Locust 2.47 writes it: the rows by (method, name), then the Aggregated row."""
    lines = [STATS_HEADER]
    lines += [row.csv() for row in sorted(traffic, key=lambda r: (r.method, r.name))]
    lines.append(aggregated_row(traffic, aggregated).csv())
    return "\n".join(lines) + "\n"


def arrivals_json(
    target_rps: float | None, sent: int, late: int, dropped: int, achieved_rps: float, cv: float
) -> dict[str, Any]:
    """The master's GET /arrivals (the locustfile's shape), with the fields the lab reads."""
    return {
        "model": "open" if target_rps else "closed", "arrivals": "poisson" if target_rps else None,
        "target_rps": target_rps or 0.0, "users": 30, "intended": sent + dropped, "sent": sent,
        "late": late, "dropped": dropped, "late_share": (late + dropped) / (sent + dropped),
        "mean_late_ms": 12.0 if late else 0.0, "max_late_ms": 40.0 if late else 0.0, "lagging_sends": 3,
        "max_send_lag_ms": 14.0, "starts": sent, "achieved_rps": achieved_rps, "interarrival_cv": cv,
        "max_per_100ms": 9, "empty_100ms_share": 0.05,
    }  # fmt: skip


def server_timing_json(traffic: list[Row], stage_ms: dict[str, float]) -> dict[str, Any]:
    """The master's GET /server-timing for responses whose stages all took `stage_ms` on average
    (p50 = mean, p95 = 1.5 x, p99 = 2 x), every request carrying every stage."""

    def stage(count: int, ms: float) -> dict[str, Any]:
        return {"count": count, "mean_ms": ms, "p50_ms": ms, "p95_ms": 1.5 * ms, "p99_ms": 2 * ms}

    total = sum(r.requests for r in traffic)
    return {
        "stages": {name: stage(total, ms) for name, ms in stage_ms.items()},
        "by_name": {r.name: {name: stage(r.requests, ms) for name, ms in stage_ms.items()} for r in traffic},
    }


@dataclass
class Measurement:
    users: int
    traffic: list[Row]
    target_rps: float | None = None
    # Server-Timing stage means; None: no server_timing.json (a master without GET /server-timing).
    server_ms: dict[str, float] | None = field(
        default_factory=lambda: {"queue": 1.5, "decode": 4.0, "infer": 12.0, "total": 19.0}
    )
    server_timing: dict[str, Any] | None = None  # the raw answer, instead of one made from server_ms
    aggregated: list[float] | None = None  # the Aggregated row's percentiles (required for several rows)
    # Per sampling time: (service, container name, CPU %, memory as docker prints it).
    docker: list[list[tuple[str, str, float, str]]] = field(default_factory=list)
    worker_cpu: list[float] = field(default_factory=list)  # Locust's own heartbeat CPU of the worker
    served_by: dict[str, int] | None = None
    arrivals: dict[str, Any] | None = None  # the master's GET /arrivals; None: no arrivals.json
    status: str = "complete"
    failures_csv: str = FAILURES_HEADER + "\n"
    duration_s: float = 20.0
    stability: dict[str, Any] | None = None  # --until-stable's decision (Stability.to_dict())


T_START = 1_795_600_000.0


def _docker_lines(m: Measurement, t_start: float) -> list[dict[str, Any]]:
    lines = []
    for i, sample in enumerate(m.docker):
        for service, name, cpu, mem in sample:
            raw = {
                "BlockIO": "0B / 0B", "CPUPerc": f"{cpu:.2f}%", "Container": name, "ID": name[:12],
                "MemPerc": "1.00%", "MemUsage": mem, "Name": name, "NetIO": "1kB / 1kB", "PIDs": "5",
            }  # fmt: skip
            lines.append({"t": t_start + 2 * i, "service": service, "raw": raw})
    return lines


def _live_lines(m: Measurement, t_start: float) -> list[dict[str, Any]]:
    return [
        {"t": t_start + 2 * i, "state": "running", "workers": [{"id": "w1", "cpu_usage": cpu}]}
        for i, cpu in enumerate(m.worker_cpu)
    ]


def _timing(m: Measurement) -> dict[str, Any] | None:
    if m.server_timing is None and m.server_ms is not None:
        return server_timing_json(m.traffic, m.server_ms)
    return m.server_timing


def measurement_record(m: Measurement, t_start: float = T_START) -> MeasurementRecord:
    return MeasurementRecord(
        users=m.users,
        target_rps=m.target_rps,
        status=m.status,
        duration_s=m.duration_s,
        t_start=t_start,
        t_end=t_start + m.duration_s,
        stability=m.stability,
    )


def measurement_data(m: Measurement, t_start: float = T_START, name: str = "01-m") -> MeasurementData:
    """What `MeasurementData.read` gives for the folder `write_measurement` writes, without the disk."""
    timing = _timing(m)
    return MeasurementData(
        dir=name,
        record=measurement_record(m, t_start),
        stats=parse_stats_csv(stats_csv(m.traffic, m.aggregated)),
        arrivals=parse_arrivals(m.arrivals) if m.arrivals is not None else None,
        server_timing=parse_server_timing(timing) if timing is not None else None,
        served_by=dict(m.served_by or {}),
        docker=_docker_lines(m, t_start),
        live=_live_lines(m, t_start),
    )


def write_measurement(mdir: Path, m: Measurement, t_start: float = T_START) -> None:
    mdir.mkdir(parents=True, exist_ok=True)
    write_record(mdir / results.MEASUREMENT_FILE, measurement_record(m, t_start))
    (mdir / "stats.csv").write_text(stats_csv(m.traffic, m.aggregated))
    timing = _timing(m)
    if timing is not None:
        (mdir / "server_timing.json").write_text(json.dumps(timing))
    (mdir / "failures.csv").write_text(m.failures_csv)
    for name, lines in (
        ("docker_stats.jsonl", _docker_lines(m, t_start)),
        ("locust_live.jsonl", _live_lines(m, t_start)),
    ):
        (mdir / name).write_text("".join(json.dumps(line) + "\n" for line in lines))
    if m.served_by is not None:
        (mdir / "served_by.json").write_text(json.dumps(m.served_by))
    if m.arrivals is not None:
        (mdir / "arrivals.json").write_text(json.dumps(m.arrivals))


@dataclass
class Config:
    replicas: int
    measurements: list[Measurement]  # one, or a ramp's steps
    workers_per_replica: int | None = None
    backend: str | None = None
    batching: str | None = None
    repeat: int = 1
    ramp: bool = False
    cpus_per_replica: float | None = None
    served_model: ServedModel | None = None  # what GET /model said after set-up

    @property
    def stack(self) -> StackConfig:
        return StackConfig(
            self.replicas, self.workers_per_replica, self.backend, self.batching, self.cpus_per_replica
        )

    def record(self, index: int, repeats: int) -> ConfigRecord:
        first = self.measurements[0]
        load = LoadLevel(first.users, first.target_rps)
        return ConfigRecord(
            index=index,
            label=config_label(self.stack.label, load.label, self.repeat, repeats),
            stack=self.stack,
            load=load,
            ramp=self.ramp,
            repeat=self.repeat,
            status="complete",
            effective=Effective(
                self.workers_per_replica, self.backend, self.batching, cpus_per_replica=self.cpus_per_replica
            ),
            served_model=self.served_model,
        )

    def measured(self) -> list[tuple[str, Measurement, float]]:
        """(folder inside the config's, measurement, t_start) per measurement: a ramp's steps, or one."""
        if not self.ramp:
            return [("", self.measurements[0], T_START)]
        return [(f"step-{k:02d}", m, T_START + 100 * k) for k, m in enumerate(self.measurements, start=1)]


def run_record(
    settings: ExperimentSettings, run_id: str = "run", host_cpus: int = 2, status: str = "complete"
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        settings=settings,
        status=status,
        git_sha="0123456789abcdef",
        started_at="2026-11-25T12:00:00+00:00",
        finished_at="2026-11-25T12:10:00+00:00",
        stack_kind="compose",
        mode=settings.mode,
        host_cpus=host_cpus,
    )


def records(
    settings: ExperimentSettings, configs: list[Config], host_cpus: int = 2, status: str = "complete"
) -> tuple[RunRecord, list[tuple[ConfigRecord, list[MeasurementData]]]]:
    """The records `write_run` writes for the same arguments, for `summary.summarise` (no disk)."""
    measured = []
    for index, cfg in enumerate(configs, start=1):
        record = cfg.record(index, settings.repeat)
        data = [measurement_data(m, t, sub or record.dirname) for sub, m, t in cfg.measured()]
        measured.append((record, data))
    return run_record(settings, host_cpus=host_cpus, status=status), measured


def write_run(
    run_dir: Path,
    settings: ExperimentSettings,
    configs: list[Config],
    host_cpus: int = 2,
    status: str = "complete",
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_record(run_dir / results.RUN_FILE, run_record(settings, run_dir.name, host_cpus, status))
    for index, cfg in enumerate(configs, start=1):
        record = cfg.record(index, settings.repeat)
        cdir = run_dir / record.dirname
        cdir.mkdir()
        write_record(cdir / results.CONFIG_FILE, record)
        for sub, m, t_start in cfg.measured():
            write_measurement(cdir / sub if sub else cdir, m, t_start)
    return run_dir


def classifier_samples(n_replicas: int, cpu_each: float, samples: int = 3, worker_cpu: float = 40.0) -> list:
    """docker-stats samples: n classifier replicas at cpu_each %, nginx, one Locust worker."""
    out = []
    for _ in range(samples):
        sample = [("classifier", f"loadlab-classifier-{i}", cpu_each, "300.5MiB / 23.54GiB")
                  for i in range(1, n_replicas + 1)]  # fmt: skip
        sample.append(("nginx", "loadlab-nginx-1", 5.0, "8MiB / 23.54GiB"))
        sample.append(("locust-worker", "loadlab-locust-worker-1", worker_cpu, "60MiB / 23.54GiB"))
        out.append(sample)
    return out
