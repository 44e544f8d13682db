"""One measurement's numbers from its raw files, and whether it met the SLO.

`MeasurementData.read(mdir)` reads a measurement's files into records; `measurement_metrics(data)`
computes from those alone (no disk), so a test can hand it records directly.

Client-side numbers are Locust's own: the `Aggregated` row of the measurement's stats.csv (every row is a
real request, so that row is exact). The server-side split comes from server_timing.json (the master's
GET /server-timing), the arrivals (late, dropped, how they were spread) from arrivals.json, container CPU
from docker_stats.jsonl, the machine's busy cores from host_cpu.jsonl.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.arrivals import Arrivals, read_arrivals
from lab.budget import CpuBudget, cpu_budget
from lab.cgroups import CGROUP_CPU_FILE
from lab.faults import AppliedFault, read_faults
from lab.grid import ExperimentSettings
from lab.limits import FELL_BEHIND_RATIO, GENERATOR_CPU_LIMIT_PCT, HOST_BUSY_FRACTION, LATE_ARRIVALS_SHARE
from lab.locust_csv import LocustStats, read_stats_csv
from lab.prometheus import PrometheusRecord, ReplicaSeries, replica_series
from lab.prometheus import note as prometheus_note
from lab.prometheus import read as read_prometheus
from lab.results import ClientBackoff, MeasurementRecord, ServedModel, read_measurement_record
from lab.samples import container_metrics, host_busy_cores, locust_worker_cpu_max, read_json, read_jsonl
from lab.server_timing import PARTS, ServerTiming, read_server_timing
from lab.stability import Stability
from lab.timeline import (
    RAMP_SKIP_S,
    FaultImpact,
    Second,
    Series,
    SoakResult,
    Stall,
    fault_impact,
    find_stalls,
    read_timeline,
    series,
    soak_result,
)


@dataclass(frozen=True)
class Thresholds:
    slo_p95_ms: float | None
    max_failure_ratio: float
    need_rps: float | None = None

    @classmethod
    def from_settings(cls, settings: ExperimentSettings) -> Thresholds:
        return cls(settings.slo_p95_ms, settings.failure_limit, settings.need_rps)


@dataclass(frozen=True)
class MeasurementMetrics:
    """The numbers of one measurement (a configuration, or one step of a ramp). Times in ms."""

    dir: str
    users: int | None
    target_rps: float | None
    status: str  # complete, interrupted, error, missing
    duration_s: float | None
    # Locust's Aggregated row.
    requests: int = 0
    failures: int = 0
    failure_ratio: float = 0.0
    rps: float = 0.0  # every request, failed ones too (Locust's)
    ok_rps: float = 0.0  # the successful ones: the throughput the report shows, failures beside it
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    requests_by_name: dict[str, int] = field(default_factory=dict)
    # Open model: achieved / target rate (of the sends, arrivals.json; else Locust's rps).
    achieved_ratio: float | None = None
    fell_behind: bool = False
    # The arrivals as sent (arrivals.json; None without it). Late: no user free at the arrival's time;
    # dropped: never sent. CV of the gaps between sends: Poisson 1, evenly spaced 0.
    arrivals: str | None = None  # poisson, even; None for a closed model
    arrivals_late: int | None = None
    arrivals_dropped: int | None = None
    arrivals_late_share: float | None = None
    too_few_users: bool = False  # open model: late + dropped above LATE_ARRIVALS_SHARE
    arrival_rps: float | None = None  # from the send times (every request started, failed or not)
    interarrival_cv: float | None = None
    max_sends_per_100ms: int | None = None
    lagging_sends: int | None = None  # > 10 ms after their time with a user free: generator short of CPU
    # Open model: from each arrival's intended time to its answer (arrivals.json), beside Locust's times
    # from the send; the SLO applies to these. None in the closed model, where nothing has an intended time.
    intended_p50_ms: float | None = None
    intended_p95_ms: float | None = None
    intended_p99_ms: float | None = None
    # Server-Timing (mean over the responses that carried each stage).
    server_queue_ms: float | None = None
    server_fetch_ms: float | None = None
    server_decode_ms: float | None = None
    server_infer_ms: float | None = None
    server_total_ms: float | None = None
    server_total_p95_ms: float | None = None
    # The mean total split into parts that add up to it: each stage's share per request, then the rest.
    server_split_ms: dict[str, float] = field(default_factory=dict)
    server_other_ms: float | None = None
    outside_server_ms: float | None = None  # client mean minus server mean: nginx, network, client
    # CPU and memory.
    cpu_cores_used: float | None = None
    total_cores_used: float | None = None
    mem_mb: float | None = None
    cpu_by_container: dict[str, float] = field(default_factory=dict)
    service_by_container: dict[str, str] = field(default_factory=dict)
    node_by_container: dict[str, str] = field(default_factory=dict)  # swarm: where each container ran
    cpu_by_node: dict[str, float] = field(default_factory=dict)  # swarm: each node's containers, in cores
    host_busy_cores: float | None = None
    machine_cpu_saturated: bool = False
    generator_cpu_max_pct: float | None = None
    generator_saturated: bool = False
    # Each container's cgroup: the replicas' CPU against their budget, CFS throttling (cgroup_cpu.jsonl).
    cpu_budget: CpuBudget | None = None
    # X-Served-By counts.
    served_by: dict[str, int] = field(default_factory=dict)
    replicas_served: int | None = None
    # Over time (timeline.json): what each --fault did, and a soak's drift.
    faults: list[FaultImpact] = field(default_factory=list)
    client_backoff: ClientBackoff | None = None  # closed model: the users' back-off after connection errors
    # Seconds in which nothing started or ended while the users ran (timeline.json): a stalled generator,
    # or a service that held every request.
    stalls: list[Stall] = field(default_factory=list)
    soak: SoakResult | None = None
    stability: Stability | None = None  # --until-stable: whether and when the driver found it settled
    # For the timeline chart only; not in summary.json (timeline.json and the samples are the raw data).
    timeline: Series | None = None
    # The monitoring profile's series (prometheus.json): whether recorded and why not (None: a run from
    # before the file existed); the per-replica series for the chart only, like `timeline`.
    prometheus_series: str | None = None
    replica_series: ReplicaSeries | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["soak"] = self.soak.to_dict() if self.soak is not None else None
        out["cpu_budget"] = self.cpu_budget.to_dict() if self.cpu_budget is not None else None
        del out["timeline"]
        del out["replica_series"]
        return out


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class _ServerSplit:
    stage_ms: dict[str, float | None]  # each part's mean over the responses that carried it
    total_ms: float | None
    total_p95_ms: float | None
    split_ms: dict[str, float]
    other_ms: float | None
    outside_ms: float | None

    @classmethod
    def of(cls, timing: ServerTiming | None, client_avg_ms: float | None) -> _ServerSplit:
        total = timing.total if timing is not None else None
        if timing is None or total is None or total.mean_ms is None:
            return cls({}, None, None, {}, None, None)
        split = {p: round(v, 3) for p in PARTS if (v := timing.per_request_ms(p)) is not None}
        return cls(
            stage_ms={p: _r(timing.mean_ms(p), 3) for p in PARTS},
            total_ms=_r(total.mean_ms, 3),
            total_p95_ms=_r(total.p95_ms, 3),
            split_ms=split,
            other_ms=_r(max(0.0, total.mean_ms - sum(split.values())), 3),
            outside_ms=_r(max(0.0, client_avg_ms - total.mean_ms), 3) if client_avg_ms is not None else None,
        )


@dataclass(frozen=True)
class MeasurementData:
    """Everything one measurement's folder holds, read into records (the input of `measurement_metrics`)."""

    dir: str
    record: MeasurementRecord
    stats: LocustStats = field(default_factory=lambda: LocustStats([], None))
    arrivals: Arrivals | None = None  # arrivals.json
    server_timing: ServerTiming | None = None  # server_timing.json
    served_by: dict[str, int] = field(default_factory=dict)  # served_by.json
    docker: list[dict[str, Any]] = field(default_factory=list)  # docker_stats.jsonl
    host_cpu: list[dict[str, Any]] = field(default_factory=list)  # host_cpu.jsonl
    live: list[dict[str, Any]] = field(default_factory=list)  # locust_live.jsonl
    processes: list[dict[str, Any]] = field(default_factory=list)  # processes.jsonl (soak)
    cgroup_cpu: list[dict[str, Any]] = field(default_factory=list)  # cgroup_cpu.jsonl
    seconds: list[Second] = field(default_factory=list)  # timeline.json
    faults: list[AppliedFault] = field(default_factory=list)  # faults.json
    prometheus: PrometheusRecord | None = None  # prometheus.json

    @classmethod
    def read(cls, mdir: Path) -> MeasurementData:
        served = read_json(mdir / "served_by.json")
        return cls(
            dir=mdir.name,
            record=read_measurement_record(mdir),
            stats=read_stats_csv(mdir / "stats.csv")
            if (mdir / "stats.csv").is_file()
            else LocustStats([], None),
            arrivals=read_arrivals(mdir / "arrivals.json"),
            server_timing=read_server_timing(mdir / "server_timing.json"),
            served_by={str(k): int(v) for k, v in served.items() if isinstance(v, int | float)},
            docker=read_jsonl(mdir / "docker_stats.jsonl"),
            host_cpu=read_jsonl(mdir / "host_cpu.jsonl"),
            live=read_jsonl(mdir / "locust_live.jsonl"),
            processes=read_jsonl(mdir / "processes.jsonl"),
            cgroup_cpu=read_jsonl(mdir / CGROUP_CPU_FILE),
            seconds=read_timeline(mdir / "timeline.json"),
            faults=read_faults(mdir / "faults.json"),
            prometheus=read_prometheus(mdir),
        )


def _over_time(
    data: MeasurementData, replicas: int | None
) -> tuple[list[FaultImpact], SoakResult | None, Series | None, list[Stall]]:
    t_start, t_end = data.record.t_start, data.record.t_end
    if t_start is None or t_end is None:
        return [], None, None, []
    seconds = data.seconds
    open_model = bool(data.record.target_rps)
    faults = [
        fault_impact(record, seconds, t_start, t_end, replicas or 0, data.served_by, data.live, open_model)
        for record in data.faults
    ]
    soak = soak_result(data.processes, seconds, t_start, t_end) if data.processes else None
    timeline = series(seconds, t_start, t_end, data.live, data.docker) if seconds else None
    first, last = math.ceil(t_start) + RAMP_SKIP_S, math.floor(t_end)
    stalls = find_stalls(seconds, first, last, t_start, data.live)
    return faults, soak, timeline, stalls


def measurement_metrics(
    data: MeasurementData, host_cpus: int, replicas: int | None = None, cpus_per_replica: float | None = None
) -> MeasurementMetrics:
    """Numbers of one measurement (a config, or a ramp step) from its records."""
    meta = data.record
    stats = data.stats
    avg_ms = _r(stats.avg_ms, 2)
    rps = round(stats.rps, 3)
    target = meta.target_rps
    arrivals = data.arrivals
    # Open model: the rate at which requests were sent (their start times, arrivals.json) is what the
    # target asked for; Locust's rps also counts the start-up before the first arrival against it.
    sent_rps = arrivals.achieved_rps if arrivals is not None and arrivals.achieved_rps else rps
    achieved = round(sent_rps / float(target), 4) if target else None
    server = _ServerSplit.of(data.server_timing, avg_ms)
    containers = container_metrics(data.docker)
    late_share = round(arrivals.late_share, 4) if arrivals is not None and target else None
    intended = arrivals.from_intended if arrivals is not None and target else None
    host = host_busy_cores(data.host_cpu)
    worker_cpu = locust_worker_cpu_max(data.live)
    generator = max(
        (v for v in (containers.generator_cpu_max_pct, worker_cpu) if v is not None), default=None
    )
    counts = data.served_by
    faults, soak, timeline, stalls = _over_time(data, replicas)
    return MeasurementMetrics(
        dir=data.dir,
        users=meta.users,
        target_rps=target,
        status=meta.status,
        duration_s=_r(meta.window_s, 2),
        requests=stats.requests,
        failures=stats.failures,
        failure_ratio=round(stats.failure_ratio, 6),
        rps=rps,
        ok_rps=round(rps * (1 - stats.failure_ratio), 3),
        avg_ms=avg_ms,
        p50_ms=_r(stats.percentile(0.5), 2),
        p95_ms=_r(stats.percentile(0.95), 2),
        p99_ms=_r(stats.percentile(0.99), 2),
        requests_by_name={f"{r.type} {r.name}": r.requests for r in stats.rows},
        achieved_ratio=achieved,
        fell_behind=achieved is not None and achieved < FELL_BEHIND_RATIO,
        arrivals=arrivals.process if arrivals is not None and target else None,
        arrivals_late=arrivals.late if arrivals is not None and target else None,
        arrivals_dropped=arrivals.dropped if arrivals is not None and target else None,
        arrivals_late_share=late_share,
        too_few_users=late_share is not None and late_share > LATE_ARRIVALS_SHARE,
        arrival_rps=_r(arrivals.achieved_rps, 2) if arrivals is not None else None,
        interarrival_cv=_r(arrivals.interarrival_cv, 3) if arrivals is not None else None,
        max_sends_per_100ms=arrivals.max_per_100ms if arrivals is not None else None,
        lagging_sends=arrivals.lagging if arrivals is not None and target else None,
        intended_p50_ms=_r(intended.p50_ms, 2) if intended is not None else None,
        intended_p95_ms=_r(intended.p95_ms, 2) if intended is not None else None,
        intended_p99_ms=_r(intended.p99_ms, 2) if intended is not None else None,
        server_queue_ms=server.stage_ms.get("queue"),
        server_fetch_ms=server.stage_ms.get("fetch"),
        server_decode_ms=server.stage_ms.get("decode"),
        server_infer_ms=server.stage_ms.get("infer"),
        server_total_ms=server.total_ms,
        server_total_p95_ms=server.total_p95_ms,
        server_split_ms=server.split_ms,
        server_other_ms=server.other_ms,
        outside_server_ms=server.outside_ms,
        cpu_cores_used=containers.cpu_cores_used,
        total_cores_used=containers.total_cores_used,
        mem_mb=containers.mem_mb,
        cpu_by_container=containers.cpu_by_container,
        service_by_container=containers.service_by_container,
        node_by_container=containers.node_by_container,
        cpu_by_node=containers.cpu_by_node,
        host_busy_cores=host,
        machine_cpu_saturated=containers.machine_saturated(host_cpus)
        or (host is not None and host >= HOST_BUSY_FRACTION * host_cpus),
        generator_cpu_max_pct=_r(generator),
        generator_saturated=generator is not None and generator > GENERATOR_CPU_LIMIT_PCT,
        cpu_budget=cpu_budget(data.cgroup_cpu, host_cpus, cpus_per_replica),
        served_by=counts,
        replicas_served=sum(1 for v in counts.values() if v > 0) if counts else None,
        faults=faults,
        client_backoff=meta.client_backoff,
        stalls=stalls,
        soak=soak,
        stability=Stability.from_dict(meta.stability) if meta.stability else None,
        timeline=timeline,
        prometheus_series=prometheus_note(data.prometheus),
        replica_series=replica_series(data.prometheus) if data.prometheus is not None else None,
    )


def evaluate(metrics: MeasurementMetrics, thresholds: Thresholds) -> tuple[bool, list[str]]:
    """Whether a measurement meets the SLO, with the reasons when it does not."""
    reasons: list[str] = []
    if metrics.status != "complete":
        reasons.append(f"measurement {metrics.status}")
    if not metrics.requests:
        reasons.append("no requests")
    # Open model: the latency a client arriving at its time would see, from the intended start.
    p95, what = metrics.p95_ms, "p95"
    if metrics.intended_p95_ms is not None:
        p95, what = metrics.intended_p95_ms, "p95 from intended start"
    if thresholds.slo_p95_ms is not None and p95 is not None and p95 > thresholds.slo_p95_ms:
        reasons.append(f"{what} {p95:g} ms > {thresholds.slo_p95_ms:g} ms")
    if metrics.failure_ratio > thresholds.max_failure_ratio:
        reasons.append(f"failure ratio {metrics.failure_ratio:.2%} > {thresholds.max_failure_ratio:.2%}")
    if metrics.fell_behind and metrics.target_rps and metrics.achieved_ratio is not None:
        reasons.append(
            f"achieved {metrics.achieved_ratio * metrics.target_rps:.1f} of {metrics.target_rps:g} req/s "
            f"target ({metrics.achieved_ratio:.0%})"
        )
    return not reasons, reasons


@dataclass(frozen=True)
class ConfigResult:
    """One measurement in its configuration's context, judged against the SLO."""

    label: str
    stack_label: str
    config_dir: str
    replicas: int
    workers_per_replica: int | None
    backend: str | None
    batching: str | None
    mode: str | None
    repeat: int
    step: int | None  # a ramp's step number, None for a fixed load
    metrics: MeasurementMetrics
    slo_met: bool
    slo_reasons: list[str]
    cpus_per_replica: float | None = (
        None  # the CPU budget asked for (CLASSIFIER_CPUS); None: none or as found
    )
    served_model: ServedModel | None = None  # GET /model after set-up (None: not read)

    @property
    def load_key(self) -> tuple[int | None, float | None]:
        return (self.metrics.users, self.metrics.target_rps)

    @property
    def processes(self) -> int:
        return self.replicas * (self.workers_per_replica or 1)

    def to_dict(self) -> dict[str, Any]:
        """Flat, as summary.json has always had it: the config's fields, then the measurement's."""
        return {
            "label": self.label,
            "stack_label": self.stack_label,
            "config_dir": self.config_dir,
            "replicas": self.replicas,
            "workers_per_replica": self.workers_per_replica,
            "backend": self.backend,
            "batching": self.batching,
            "cpus_per_replica": self.cpus_per_replica,
            "mode": self.mode,
            "repeat": self.repeat,
            "step": self.step,
            **self.metrics.to_dict(),
            "slo_met": self.slo_met,
            "slo_reasons": list(self.slo_reasons),
            "served_model": asdict(self.served_model) if self.served_model is not None else None,
        }
