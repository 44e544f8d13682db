"""One measurement's numbers from its raw files, and whether it met the SLO.

Client-side numbers are Locust's own: the `Aggregated` row of the measurement's stats.csv (every row is a
real request, so that row is exact). The server-side split comes from server_timing.json (the master's
GET /server-timing), container CPU from docker_stats.jsonl, the machine's busy cores from host_cpu.jsonl.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.grid import ExperimentSettings
from lab.limits import FELL_BEHIND_RATIO, GENERATOR_CPU_LIMIT_PCT, HOST_BUSY_FRACTION
from lab.locust_csv import read_stats_csv
from lab.samples import container_metrics, host_busy_cores, locust_worker_cpu_max, read_json, read_jsonl
from lab.server_timing import PARTS, ServerTiming, read_server_timing


@dataclass(frozen=True)
class Thresholds:
    slo_p95_ms: float | None
    max_failure_ratio: float
    need_rps: float | None = None

    @classmethod
    def from_settings(cls, settings: ExperimentSettings) -> Thresholds:
        return cls(settings.slo_p95_ms, settings.max_failure_ratio, settings.need_rps)


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
    rps: float = 0.0
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    requests_by_name: dict[str, int] = field(default_factory=dict)
    # Open model: achieved / target throughput.
    achieved_ratio: float | None = None
    fell_behind: bool = False
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
    host_busy_cores: float | None = None
    machine_cpu_saturated: bool = False
    generator_cpu_max_pct: float | None = None
    generator_saturated: bool = False
    # X-Served-By counts.
    served_by: dict[str, int] = field(default_factory=dict)
    replicas_served: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _window(meta: dict[str, Any]) -> float | None:
    start, end = meta.get("t_start"), meta.get("t_end")
    if isinstance(start, int | float) and isinstance(end, int | float):
        return end - start
    return None


def _server_fields(timing: ServerTiming | None, client_avg_ms: float | None) -> dict[str, Any]:
    if timing is None or timing.total is None:
        return {}
    total = timing.total.mean_ms
    split = {p: v for p in PARTS if (v := timing.per_request_ms(p)) is not None}
    out: dict[str, Any] = {f"server_{p}_ms": _r(timing.mean_ms(p), 3) for p in PARTS}
    out["server_total_ms"] = _r(total, 3)
    out["server_total_p95_ms"] = _r(timing.total.p95_ms, 3)
    out["server_split_ms"] = {p: round(v, 3) for p, v in split.items()}
    if total is not None:
        out["server_other_ms"] = _r(max(0.0, total - sum(split.values())), 3)
        if client_avg_ms is not None:
            out["outside_server_ms"] = _r(max(0.0, client_avg_ms - total), 3)
    return out


def measurement_metrics(mdir: Path, host_cpus: int) -> MeasurementMetrics:
    """Numbers of one measurement (a config, or a ramp step) from its raw files."""
    meta = read_json(mdir / "measurement.json")
    fields: dict[str, Any] = {
        "dir": mdir.name,
        "users": meta.get("users"),
        "target_rps": meta.get("target_rps"),
        "status": meta.get("status", "missing"),
        "duration_s": _r(_window(meta), 2),
    }
    if (mdir / "stats.csv").is_file():
        stats = read_stats_csv(mdir / "stats.csv")
        fields.update(
            requests=stats.requests,
            failures=stats.failures,
            failure_ratio=round(stats.failure_ratio, 6),
            rps=round(stats.rps, 3),
            avg_ms=_r(stats.avg_ms, 2),
            p50_ms=_r(stats.percentile(0.5), 2),
            p95_ms=_r(stats.percentile(0.95), 2),
            p99_ms=_r(stats.percentile(0.99), 2),
            requests_by_name={f"{r.type} {r.name}": r.requests for r in stats.rows},
        )
    fields.update(_server_fields(read_server_timing(mdir / "server_timing.json"), fields.get("avg_ms")))
    target = fields["target_rps"]
    if target:
        fields["achieved_ratio"] = round(fields.get("rps", 0.0) / float(target), 4)
        fields["fell_behind"] = fields["achieved_ratio"] < FELL_BEHIND_RATIO
    containers = container_metrics(read_jsonl(mdir / "docker_stats.jsonl"))
    host = host_busy_cores(read_jsonl(mdir / "host_cpu.jsonl"))
    generator = [
        v
        for v in (
            containers.generator_cpu_max_pct,
            locust_worker_cpu_max(read_jsonl(mdir / "locust_live.jsonl")),
        )
        if v is not None
    ]
    served = read_json(mdir / "served_by.json")
    counts = {str(k): int(v) for k, v in served.items() if isinstance(v, int | float)}
    return MeasurementMetrics(
        **fields,
        cpu_cores_used=containers.cpu_cores_used,
        total_cores_used=containers.total_cores_used,
        mem_mb=containers.mem_mb,
        cpu_by_container=containers.cpu_by_container,
        service_by_container=containers.service_by_container,
        host_busy_cores=host,
        machine_cpu_saturated=containers.machine_saturated(host_cpus)
        or (host is not None and host >= HOST_BUSY_FRACTION * host_cpus),
        generator_cpu_max_pct=_r(max(generator)) if generator else None,
        generator_saturated=bool(generator) and max(generator) > GENERATOR_CPU_LIMIT_PCT,
        served_by=counts,
        replicas_served=sum(1 for v in counts.values() if v > 0) if counts else None,
    )


def evaluate(metrics: MeasurementMetrics, thresholds: Thresholds) -> tuple[bool, list[str]]:
    """Whether a measurement meets the SLO, with the reasons when it does not."""
    reasons: list[str] = []
    if metrics.status != "complete":
        reasons.append(f"measurement {metrics.status}")
    if not metrics.requests:
        reasons.append("no requests")
    p95 = metrics.p95_ms
    if thresholds.slo_p95_ms is not None and p95 is not None and p95 > thresholds.slo_p95_ms:
        reasons.append(f"p95 {p95:g} ms > {thresholds.slo_p95_ms:g} ms")
    if metrics.failure_ratio > thresholds.max_failure_ratio:
        reasons.append(f"failure ratio {metrics.failure_ratio:.2%} > {thresholds.max_failure_ratio:.2%}")
    if metrics.fell_behind and metrics.target_rps and metrics.achieved_ratio is not None:
        reasons.append(
            f"achieved {metrics.rps:.1f} of {metrics.target_rps:g} req/s target "
            f"({metrics.achieved_ratio:.0%})"
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
            "mode": self.mode,
            "repeat": self.repeat,
            "step": self.step,
            **self.metrics.to_dict(),
            "slo_met": self.slo_met,
            "slo_reasons": list(self.slo_reasons),
        }
