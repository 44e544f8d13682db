"""A run's summary, rebuilt from its raw files alone (measure and report are separate): every measurement
judged against the SLO, the capacity analysis and the verdict. summary.json is `Summary.to_dict()`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.capacity import CapacityAnalysis, analyse, verdict
from lab.grid import ExperimentSettings
from lab.metrics import ConfigResult, Thresholds, evaluate, measurement_metrics
from lab.samples import read_json
from lab.stacks import stack_kind


@dataclass(frozen=True)
class Summary:
    run_id: str | None
    git_sha: str | None
    started_at: str | None
    finished_at: str | None
    status: str | None
    settings: dict[str, Any]  # as saved in run.json
    thresholds: Thresholds
    host_cpus: int
    stack: str | None  # compose, swarm or external
    nodes: (
        int | None
    )  # Docker hosts the stack ran on (swarm: its nodes; compose: this one; external: unknown)
    configs: list[ConfigResult]
    analysis: CapacityAnalysis
    verdict: str

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
            "run_id": self.run_id,
            "git_sha": self.git_sha,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "settings": self.settings,
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
        }


def _measurement_dirs(cdir: Path) -> list[Path]:
    if (cdir / "measurement.json").is_file():
        return [cdir]
    return sorted(p for p in cdir.glob("step-*") if (p / "measurement.json").is_file())


def _load_label(users: int | None, target_rps: float | None) -> str:
    return f"rate{target_rps:g}-u{users}" if target_rps else f"u{users}"


def config_results(run_dir: Path, thresholds: Thresholds, host_cpus: int) -> list[ConfigResult]:
    results: list[ConfigResult] = []
    for cdir in sorted(p for p in run_dir.iterdir() if (p / "config.json").is_file()):
        cfg = read_json(cdir / "config.json")
        effective = cfg.get("effective", {})
        ramp = bool(cfg.get("ramp"))
        for step, mdir in enumerate(_measurement_dirs(cdir), start=1):
            replicas = int(cfg.get("stack", {}).get("replicas") or 0)
            metrics = measurement_metrics(mdir, host_cpus, replicas)
            ok, reasons = evaluate(metrics, thresholds)
            stack_label = str(cfg.get("stack_label"))
            results.append(
                ConfigResult(
                    label=f"{stack_label}-{_load_label(metrics.users, metrics.target_rps)}"
                    if ramp
                    else str(cfg.get("label")),
                    stack_label=stack_label,
                    config_dir=cdir.name,
                    replicas=replicas,
                    workers_per_replica=effective.get("workers_per_replica"),
                    backend=effective.get("backend"),
                    batching=effective.get("batching"),
                    mode=cfg.get("mode"),
                    repeat=int(cfg.get("repeat") or 1),
                    step=step if ramp else None,
                    metrics=metrics,
                    slo_met=ok,
                    slo_reasons=reasons,
                )
            )
    return results


def build_summary(run_dir: Path, thresholds: Thresholds | None = None) -> Summary:
    run = read_json(run_dir / "run.json")
    if not run:
        raise FileNotFoundError(f"{run_dir / 'run.json'} is missing: not a `lab compare` result folder")
    settings = ExperimentSettings.from_dict(run.get("settings", {}))
    thresholds = thresholds or Thresholds.from_settings(settings)
    host_cpus = int(run.get("host_cpus") or 1)
    configs = config_results(run_dir, thresholds, host_cpus)
    analysis = analyse(configs, thresholds, settings.ramp)
    stack = run.get("stack_kind")
    nodes = (run.get("stack_before") or {}).get("nodes")
    return Summary(
        run_id=run.get("run_id"),
        git_sha=run.get("git_sha"),
        started_at=run.get("started_at"),
        finished_at=run.get("finished_at"),
        status=run.get("status"),
        settings=run.get("settings") or {},
        thresholds=thresholds,
        host_cpus=host_cpus,
        stack=stack,
        nodes=len(nodes) if isinstance(nodes, list) else stack_kind(stack).nodes,
        configs=configs,
        analysis=analysis,
        verdict=verdict(configs, analysis, thresholds, host_cpus, stack),
    )
