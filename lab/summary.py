"""A run's summary, rebuilt from its raw files alone (measure and report are separate): every measurement
judged against the SLO, the capacity analysis and the verdict. summary.json is `Summary.to_dict()`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.capacity import CapacityAnalysis, analyse, verdict
from lab.grid import ExperimentSettings, config_label, load_label
from lab.metrics import ConfigResult, MeasurementData, Thresholds, evaluate, measurement_metrics
from lab.plan import Measured, Plan, PlanRequest, make_plan
from lab.results import (
    SCHEMA_VERSION,
    ConfigRecord,
    RunRecord,
    config_dirs,
    measurement_dirs,
    read_config,
    read_run,
)
from lab.stacks import stack_kind


@dataclass(frozen=True)
class Summary:
    run_id: str | None
    git_sha: str | None
    started_at: str | None
    finished_at: str | None
    status: str | None
    settings: dict[str, Any]  # run.json's, at the current schema version
    mode: str  # closed, open, ramp-closed, ramp-open
    thresholds: Thresholds
    host_cpus: int
    stack: str | None  # compose, swarm or external
    nodes: (
        int | None
    )  # Docker hosts the stack ran on (swarm: its nodes; compose: this one; external: unknown)
    configs: list[ConfigResult]
    analysis: CapacityAnalysis
    verdict: str
    # `lab plan` at the end of `lab compare`, when --need-rps and --slo-p95-ms were both given and the run
    # measured at least 2 replica counts; plan_error says why there is none when one was asked for.
    plan: Plan | None = None
    plan_error: str | None = None

    @property
    def slo_met_by_any(self) -> bool:
        return any(c.slo_met for c in self.configs)

    def unmet_reason(self) -> str | None:
        """Why the thresholds fail the run (k6-style), or None when some configuration met them."""
        if not self.configs:
            return "nothing was measured"
        need = self.thresholds.need_rps
        if need is not None and self.analysis.recommended is None:
            return f"no configuration served {need:g} req/s within the thresholds"
        if self.slo_met_by_any:
            return None
        lines = [f"{c.label}: {'; '.join(c.slo_reasons)}" for c in self.configs]
        return "no configuration met the thresholds:\n  " + "\n  ".join(lines)

    def to_dict(self) -> dict[str, Any]:
        a = self.analysis
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "git_sha": self.git_sha,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "settings": self.settings,
            "mode": self.mode,
            "thresholds": asdict(self.thresholds),
            "host_cpus": self.host_cpus,
            "stack": self.stack,
            "nodes": self.nodes,
            "configs": [c.to_dict() for c in self.configs],
            "capacity": a.capacity,
            "knee": {k: asdict(v) if v is not None else None for k, v in a.knee.items()},
            "peak_rps": a.peak_rps,
            "scaling_efficiency": {k: asdict(v) for k, v in a.scaling_efficiency.items()},
            "recommended": asdict(a.recommended) if a.recommended is not None else None,
            "slo_met_by_any": self.slo_met_by_any,
            "verdict": self.verdict,
            "repeats": a.repeats.to_dict() if a.repeats is not None else None,
            # A quantized model's throughput against another backend, with its build's agreement check.
            "tradeoffs": [asdict(t) for t in a.tradeoffs],
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "plan_error": self.plan_error,
        }


def config_results(
    config: ConfigRecord, measurements: list[MeasurementData], thresholds: Thresholds, host_cpus: int
) -> list[ConfigResult]:
    """A configuration's measurements (one, or a ramp's steps in order) judged against the thresholds."""
    results: list[ConfigResult] = []
    replicas = config.stack.replicas
    effective = config.effective
    for step, data in enumerate(measurements, start=1):
        metrics = measurement_metrics(data, host_cpus, replicas, effective.cpus_per_replica)
        ok, reasons = evaluate(metrics, thresholds)
        results.append(
            ConfigResult(
                label=config_label(config.stack_label, load_label(metrics.users, metrics.target_rps))
                if config.ramp
                else config.label,
                stack_label=config.stack_label,
                config_dir=config.dirname,
                replicas=replicas,
                workers_per_replica=effective.workers_per_replica,
                backend=effective.backend,
                batching=effective.batching,
                cpus_per_replica=effective.cpus_per_replica,
                mode=config.mode or data.record.mode,
                repeat=config.repeat,
                step=step if config.ramp else None,
                metrics=metrics,
                slo_met=ok,
                slo_reasons=reasons,
                served_model=config.served_model,
            )
        )
    return results


def summarise(
    run: RunRecord,
    configs: list[tuple[ConfigRecord, list[MeasurementData]]],
    thresholds: Thresholds | None = None,
) -> Summary:
    """The summary of a run from its records alone (`build_summary` reads them from a folder)."""
    settings = run.settings
    thresholds = thresholds or Thresholds.from_settings(settings)
    host_cpus = int(run.host_cpus or 1)
    measured = measured_of(run, configs, thresholds)
    results = [m.entry for m in measured]
    analysis = analyse(results, thresholds, settings.ramp)
    plan, plan_error = _plan(measured, thresholds, settings)
    stack = run.stack_kind
    nodes = (run.stack_before or {}).get("nodes")
    return Summary(
        run_id=run.run_id,
        git_sha=run.git_sha,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=run.status,
        settings=settings.to_dict(),
        mode=run.mode or settings.mode,
        thresholds=thresholds,
        host_cpus=host_cpus,
        stack=stack,
        nodes=len(nodes) if isinstance(nodes, list) else stack_kind(stack).nodes,
        configs=results,
        analysis=analysis,
        verdict=verdict(results, analysis, thresholds, host_cpus, stack),
        plan=plan,
        plan_error=plan_error,
    )


def measured_of(
    run: RunRecord,
    configs: list[tuple[ConfigRecord, list[MeasurementData]]],
    thresholds: Thresholds,
) -> list[Measured]:
    """Every measurement judged, with its Server-Timing split (what a plan's latency model needs)."""
    host_cpus = int(run.host_cpus or 1)
    out: list[Measured] = []
    for cfg, data in configs:
        results = config_results(cfg, data, thresholds, host_cpus)
        out += [Measured(run.run_id, r, d.server_timing) for r, d in zip(results, data, strict=True)]
    return out


def _plan(
    measured: list[Measured], thresholds: Thresholds, settings: ExperimentSettings
) -> tuple[Plan | None, str | None]:
    need, slo = thresholds.need_rps, thresholds.slo_p95_ms
    if need is None or slo is None:
        return None, None
    if len({m.entry.replicas for m in measured}) < 2:
        return None, "a plan past what was measured needs at least 2 replica counts"
    try:
        return make_plan(measured, thresholds, PlanRequest(need, slo)), None
    except ValueError as err:
        return None, str(err)


def read_configs(run_dir: Path) -> list[tuple[ConfigRecord, list[MeasurementData]]]:
    return [
        (read_config(cdir), [MeasurementData.read(mdir) for mdir in measurement_dirs(cdir)])
        for cdir in config_dirs(run_dir)
    ]


def build_summary(run_dir: Path, thresholds: Thresholds | None = None) -> Summary:
    """Raises FileNotFoundError without run.json, SchemaError for files this lab cannot read."""
    return summarise(read_run(run_dir), read_configs(run_dir), thresholds)


def ramp_judge(thresholds: Thresholds) -> Callable[[Path], tuple[bool, list[str]]]:
    """What `lab compare --ramp` asks after each step (go on only while the step meets the thresholds):
    the same judgement the summary makes afterwards."""

    def judge(mdir: Path) -> tuple[bool, list[str]]:
        return evaluate(measurement_metrics(MeasurementData.read(mdir), host_cpus=1), thresholds)

    return judge
