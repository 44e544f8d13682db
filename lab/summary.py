"""From a run's raw files to numbers: per-measurement metrics, SLO checks, capacity, scaling efficiency,
the recommended configuration and the verdict. Reads files only (measure and report are separate)."""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.grid import ExperimentSettings
from lab.locust_csv import LocustStats, read_stats_csv
from lab.sampler import read_jsonl

GENERATOR_CPU_LIMIT_PCT = 90.0  # a Locust worker above this was likely what limited the run
FELL_BEHIND_RATIO = 0.95  # open model: achieved / target below this = the arrivals did not happen
MACHINE_CPU_FRACTION = 0.85  # classifiers using this share of the host's cores = the machine was the limit
HOST_BUSY_FRACTION = 0.9  # the whole machine this busy (any process) = no core left to scale into
SERVER_METRICS = ("queue", "decode", "infer", "total")
CLASSIFIER_SERVICE = "classifier"
GENERATOR_SERVICE = "locust-worker"

_SIZE_UNITS = {
    "b": 1 / 2**20,
    "kib": 1 / 1024,
    "mib": 1.0,
    "gib": 1024.0,
    "tib": 1024.0**2,
    "kb": 1e3 / 2**20,
    "mb": 1e6 / 2**20,
    "gb": 1e9 / 2**20,
}


@dataclass
class Thresholds:
    slo_p95_ms: float | None
    max_failure_ratio: float
    need_rps: float | None = None

    @classmethod
    def from_settings(cls, settings: ExperimentSettings) -> Thresholds:
        return cls(settings.slo_p95_ms, settings.max_failure_ratio, settings.need_rps)


def parse_mem_mb(text: str) -> float | None:
    """'123.4MiB / 23.5GiB' (docker stats MemUsage) -> 123.4 (MiB)."""
    match = re.match(r"\s*([\d.]+)\s*([A-Za-z]+)", text or "")
    if not match:
        return None
    factor = _SIZE_UNITS.get(match.group(2).lower())
    return float(match.group(1)) * factor if factor is not None else None


def parse_cpu_pct(text: str) -> float | None:
    try:
        return float(str(text).strip().rstrip("%"))
    except ValueError:
        return None


def container_metrics(samples: list[dict[str, Any]], host_cpus: int) -> dict[str, Any]:
    """CPU and memory from docker-stats samples (one JSON line per container per sampling time)."""
    by_time: dict[float, list[dict[str, Any]]] = defaultdict(list)
    per_container: dict[str, list[float]] = defaultdict(list)
    service_of: dict[str, str] = {}
    generator_max: float | None = None
    for sample in samples:
        raw = sample.get("raw")
        if not isinstance(raw, dict):
            continue
        cpu = parse_cpu_pct(raw.get("CPUPerc", ""))
        mem = parse_mem_mb(raw.get("MemUsage", ""))
        name = str(raw.get("Name", ""))
        service = str(sample.get("service", ""))
        service_of[name] = service
        by_time[sample["t"]].append({"service": service, "cpu": cpu, "mem": mem})
        if cpu is not None:
            per_container[name].append(cpu)
            if service == GENERATOR_SERVICE:
                generator_max = cpu if generator_max is None else max(generator_max, cpu)
    if not by_time:
        return {}
    classifier_cores: list[float] = []
    all_cores: list[float] = []
    classifier_mem: list[float] = []
    for rows in by_time.values():
        cls = [r for r in rows if r["service"] == CLASSIFIER_SERVICE]
        if cls:
            classifier_cores.append(sum(r["cpu"] or 0.0 for r in cls) / 100.0)
            classifier_mem.append(sum(r["mem"] or 0.0 for r in cls))
        all_cores.append(sum(r["cpu"] or 0.0 for r in rows) / 100.0)
    cpu_by_container = {
        name: round(statistics.fmean(values), 1) for name, values in sorted(per_container.items()) if values
    }
    cores = statistics.fmean(classifier_cores) if classifier_cores else None
    total = statistics.fmean(all_cores) if all_cores else None
    return {
        "cpu_cores_used": round(cores, 3) if cores is not None else None,
        "total_cores_used": round(total, 3) if total is not None else None,
        "mem_mb": round(max(classifier_mem), 1) if classifier_mem else None,
        "cpu_by_container": cpu_by_container,
        "service_by_container": {n: service_of[n] for n in cpu_by_container},
        "generator_cpu_docker_max_pct": generator_max,
        "machine_cpu_saturated": bool(
            (cores is not None and cores >= MACHINE_CPU_FRACTION * host_cpus)
            or (total is not None and total >= 0.95 * host_cpus)
        ),
        "cpu_samples": len(by_time),
    }


def locust_worker_cpu_max(live: list[dict[str, Any]]) -> float | None:
    """Max CPU a worker reported to the master (psutil, sampled by Locust's heartbeat)."""
    values = [
        float(w["cpu_usage"])
        for row in live
        for w in row.get("workers") or []
        if isinstance(w, dict) and w.get("cpu_usage") is not None
    ]
    return max(values) if values else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError):
        return {}


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def measurement_metrics(mdir: Path, host_cpus: int) -> dict[str, Any]:
    """Numbers of one measurement (a config, or a ramp step) from its raw files."""
    meta = _read_json(mdir / "measurement.json")
    users = meta.get("users")
    target = meta.get("target_rps")
    out: dict[str, Any] = {
        "users": users,
        "target_rps": target,
        "status": meta.get("status", "missing"),
        "duration_s": _r(_window(meta), 2),
        "dir": mdir.name,
    }
    stats: LocustStats | None = None
    if (mdir / "stats.csv").is_file():
        stats = read_stats_csv(mdir / "stats.csv")
    if stats is None:
        out.update({"requests": 0, "failures": 0, "rps": 0.0, "p50_ms": None, "p95_ms": None, "p99_ms": None})
    else:
        out.update(
            {
                "requests": stats.requests,
                "failures": stats.failures,
                "failure_ratio": round(stats.failure_ratio, 6),
                "rps": round(stats.rps, 3),
                "avg_ms": _r(stats.avg_ms, 2),
                "p50_ms": _r(stats.percentile(0.5), 2),
                "p95_ms": _r(stats.percentile(0.95), 2),
                "p99_ms": _r(stats.percentile(0.99), 2),
                "requests_by_name": {f"{r.type} {r.name}": r.requests for r in stats.traffic},
            }
        )
        server = {name: stats.server(name) for name in SERVER_METRICS}
        for name, row in server.items():
            out[f"server_{name}_ms"] = _r(row.avg_ms, 3) if row and row.requests else None
        parts = [out[f"server_{n}_ms"] for n in ("queue", "decode", "infer")]
        total = out["server_total_ms"]
        out["server_other_ms"] = (
            _r(max(0.0, total - sum(parts)), 3) if total is not None and None not in parts else None
        )
        avg = out.get("avg_ms")
        out["outside_server_ms"] = (
            _r(max(0.0, avg - total), 3) if avg is not None and total is not None else None
        )
    out.setdefault("failure_ratio", 0.0)
    if target:
        out["achieved_ratio"] = round(out["rps"] / float(target), 4)
        out["fell_behind"] = out["achieved_ratio"] < FELL_BEHIND_RATIO
    else:
        out["achieved_ratio"] = None
        out["fell_behind"] = False
    containers = container_metrics(read_jsonl(mdir / "docker_stats.jsonl"), host_cpus)
    out["cpu_cores_used"] = containers.get("cpu_cores_used")
    out["total_cores_used"] = containers.get("total_cores_used")
    out["mem_mb"] = containers.get("mem_mb")
    out["cpu_by_container"] = containers.get("cpu_by_container", {})
    out["service_by_container"] = containers.get("service_by_container", {})
    out["machine_cpu_saturated"] = containers.get("machine_cpu_saturated", False)
    candidates = [
        v
        for v in (
            containers.get("generator_cpu_docker_max_pct"),
            locust_worker_cpu_max(read_jsonl(mdir / "locust_live.jsonl")),
        )
        if v is not None
    ]
    host = [r["busy_cores"] for r in read_jsonl(mdir / "host_cpu.jsonl") if "busy_cores" in r]
    out["host_busy_cores"] = round(statistics.fmean(host), 3) if host else None
    if out["host_busy_cores"] is not None and out["host_busy_cores"] >= HOST_BUSY_FRACTION * host_cpus:
        out["machine_cpu_saturated"] = True
    out["generator_cpu_max_pct"] = _r(max(candidates)) if candidates else None
    out["generator_saturated"] = bool(candidates) and max(candidates) > GENERATOR_CPU_LIMIT_PCT
    served = _read_json(mdir / "served_by.json")
    counts = {str(k): int(v) for k, v in served.items() if isinstance(v, int | float)}
    out["served_by"] = counts
    out["replicas_served"] = sum(1 for v in counts.values() if v > 0) if counts else None
    return out


def _window(meta: dict[str, Any]) -> float | None:
    start, end = meta.get("t_start"), meta.get("t_end")
    if isinstance(start, int | float) and isinstance(end, int | float):
        return end - start
    return None


def evaluate(metrics: dict[str, Any], thresholds: Thresholds) -> tuple[bool, list[str]]:
    """Whether a measurement meets the SLO, with the reasons when it does not."""
    reasons: list[str] = []
    if metrics.get("status") != "complete":
        reasons.append(f"measurement {metrics.get('status')}")
    if not metrics.get("requests"):
        reasons.append("no requests")
    p95 = metrics.get("p95_ms")
    if thresholds.slo_p95_ms is not None and p95 is not None and p95 > thresholds.slo_p95_ms:
        reasons.append(f"p95 {p95:g} ms > {thresholds.slo_p95_ms:g} ms")
    ratio = metrics.get("failure_ratio") or 0.0
    if ratio > thresholds.max_failure_ratio:
        reasons.append(f"failure ratio {ratio:.2%} > {thresholds.max_failure_ratio:.2%}")
    if metrics.get("fell_behind"):
        reasons.append(
            f"achieved {metrics['rps']:.1f} of {metrics['target_rps']:g} req/s target "
            f"({metrics['achieved_ratio']:.0%})"
        )
    return not reasons, reasons


def _measurement_dirs(cdir: Path) -> list[Path]:
    if (cdir / "measurement.json").is_file():
        return [cdir]
    return sorted(p for p in cdir.glob("step-*") if (p / "measurement.json").is_file())


def _processes(entry: dict[str, Any]) -> int:
    return int(entry["replicas"]) * int(entry.get("workers_per_replica") or 1)


def build_summary(run_dir: Path, thresholds: Thresholds | None = None) -> dict[str, Any]:
    run = _read_json(run_dir / "run.json")
    if not run:
        raise FileNotFoundError(f"{run_dir / 'run.json'} is missing: not a `lab compare` result folder")
    settings = ExperimentSettings.from_dict(run.get("settings", {}))
    thresholds = thresholds or Thresholds.from_settings(settings)
    host_cpus = int(run.get("host_cpus") or 1)
    configs: list[dict[str, Any]] = []
    for cdir in sorted(p for p in run_dir.iterdir() if (p / "config.json").is_file()):
        cfg = _read_json(cdir / "config.json")
        effective = cfg.get("effective", {})
        steps = _measurement_dirs(cdir)
        for step_index, mdir in enumerate(steps, start=1):
            metrics = measurement_metrics(mdir, host_cpus)
            entry: dict[str, Any] = {
                "label": cfg.get("label"),
                "stack_label": cfg.get("stack_label"),
                "config_dir": cdir.name,
                "replicas": cfg.get("stack", {}).get("replicas"),
                "workers_per_replica": effective.get("workers_per_replica"),
                "backend": effective.get("backend"),
                "batching": effective.get("batching"),
                "mode": cfg.get("mode"),
                "repeat": cfg.get("repeat", 1),
                "step": step_index if cfg.get("ramp") else None,
                **metrics,
            }
            if cfg.get("ramp"):
                entry["label"] = f"{cfg.get('stack_label')}-{_load_label(metrics)}"
            ok, reasons = evaluate(entry, thresholds)
            entry["slo_met"] = ok
            entry["slo_reasons"] = reasons
            configs.append(entry)
    capacity, knees = _capacity(configs)
    peak = _peak_rps(configs, thresholds)
    efficiency = _scaling_efficiency(configs, peak)
    recommended = _recommend(configs, capacity, thresholds, settings)
    summary: dict[str, Any] = {
        "run_id": run.get("run_id"),
        "git_sha": run.get("git_sha"),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "status": run.get("status"),
        "settings": run.get("settings"),
        "thresholds": {
            "slo_p95_ms": thresholds.slo_p95_ms,
            "max_failure_ratio": thresholds.max_failure_ratio,
            "need_rps": thresholds.need_rps,
        },
        "host_cpus": host_cpus,
        "stack": run.get("stack_kind"),
        "configs": configs,
        "capacity": capacity,
        "knee": knees,
        "peak_rps": peak,
        "scaling_efficiency": efficiency,
        "recommended": recommended,
    }
    summary["slo_met_by_any"] = any(c["slo_met"] for c in configs)
    summary["verdict"] = verdict(summary)
    return summary


def _load_label(metrics: dict[str, Any]) -> str:
    if metrics.get("target_rps"):
        return f"rate{metrics['target_rps']:g}-u{metrics['users']}"
    return f"u{metrics.get('users')}"


def _load_key(entry: dict[str, Any]) -> tuple[Any, Any]:
    return (entry.get("users"), entry.get("target_rps"))


def _capacity(
    configs: list[dict[str, Any]],
) -> tuple[dict[str, float | None], dict[str, dict[str, Any] | None]]:
    """Per stack label: the highest throughput among load levels that met the SLO in every repeat (the
    lowest repeat's throughput counts: sustained, not lucky). None when no level met it."""
    by_label: dict[str, dict[tuple[Any, Any], list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    repeats: dict[str, set[int]] = defaultdict(set)
    for entry in configs:
        by_label[entry["stack_label"]][_load_key(entry)].append(entry)
        repeats[entry["stack_label"]].add(int(entry.get("repeat") or 1))
    capacity: dict[str, float | None] = {}
    knees: dict[str, dict[str, Any] | None] = {}
    for label, levels in by_label.items():
        best: float | None = None
        knee: dict[str, Any] | None = None
        for (users, target), entries in levels.items():
            every_repeat = {int(e.get("repeat") or 1) for e in entries} == repeats[label]
            if every_repeat and all(e["slo_met"] for e in entries):
                rps = min(e["rps"] for e in entries)
                if best is None or rps > best:
                    best = rps
                    knee = {"users": users, "target_rps": target, "rps": rps}
        capacity[label] = round(best, 3) if best is not None else None
        knees[label] = knee
    return capacity, knees


def _peak_rps(configs: list[dict[str, Any]], thresholds: Thresholds) -> dict[str, float | None]:
    """Per stack label: the highest median-over-repeats throughput with failures within the limit,
    whatever the latency (what the replicas could push, for scaling efficiency)."""
    by_label: dict[str, dict[tuple[Any, Any], list[float]]] = {
        e["stack_label"]: defaultdict(list) for e in configs
    }
    for entry in configs:
        ok = (
            entry.get("status") == "complete"
            and (entry.get("failure_ratio") or 0) <= thresholds.max_failure_ratio
        )
        if ok and entry.get("requests"):
            by_label[entry["stack_label"]][_load_key(entry)].append(entry["rps"])
    return {
        label: (round(max(statistics.median(v) for v in levels.values()), 3) if levels else None)
        for label, levels in by_label.items()
    }


def _group_key(entry: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (entry.get("workers_per_replica"), entry.get("backend"), entry.get("batching"))


def _scaling_efficiency(
    configs: list[dict[str, Any]], peak: dict[str, float | None]
) -> dict[str, dict[str, Any]]:
    """RPS_N / (N/N0 x RPS_N0) within each group of configs that differ only by replicas (N0: fewest
    replicas measured in the group, ideally 1)."""
    labels: dict[str, dict[str, Any]] = {}
    for entry in configs:
        labels.setdefault(entry["stack_label"], entry)
    groups: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for entry in labels.values():
        groups[_group_key(entry)].append(entry)
    out: dict[str, dict[str, Any]] = {}
    for members in groups.values():
        members.sort(key=lambda e: e["replicas"])
        base = members[0]
        base_rps = peak.get(base["stack_label"])
        for entry in members:
            rps = peak.get(entry["stack_label"])
            value = None
            if rps is not None and base_rps:
                value = rps / ((entry["replicas"] / base["replicas"]) * base_rps)
            out[entry["stack_label"]] = {
                "replicas": entry["replicas"],
                "base": base["stack_label"],
                "rps": rps,
                "efficiency": round(value, 3) if value is not None else None,
            }
    return out


def _recommend(
    configs: list[dict[str, Any]],
    capacity: dict[str, float | None],
    thresholds: Thresholds,
    settings: ExperimentSettings,
) -> dict[str, Any] | None:
    """Fewest classifier processes (replicas x workers), then fewest replicas, then highest capacity,
    among configs that meet the SLO (and serve `need_rps` when given). A ramp without a need picks
    within 5 % of the best capacity, so a config is not chosen for being cheap at a light load."""
    first: dict[str, dict[str, Any]] = {}
    for entry in configs:
        first.setdefault(entry["stack_label"], entry)
    candidates = [label for label, cap in capacity.items() if cap is not None]
    need = thresholds.need_rps
    why = "meets the SLO with the fewest classifier processes"
    if need is not None:
        candidates = [label for label in candidates if (capacity[label] or 0) >= need]
        why = f"serves {need:g} req/s within the SLO with the fewest classifier processes"
    elif settings.ramp and candidates:
        best = max(capacity[label] or 0 for label in candidates)
        candidates = [label for label in candidates if (capacity[label] or 0) >= 0.95 * best]
        why = "has (within 5 %) the highest capacity, with the fewest classifier processes"
    if not candidates:
        return None
    candidates.sort(
        key=lambda label: (_processes(first[label]), first[label]["replicas"], -(capacity[label] or 0))
    )
    label = candidates[0]
    return {
        "label": label,
        "capacity": capacity[label],
        "replicas": first[label]["replicas"],
        "workers_per_replica": first[label].get("workers_per_replica"),
        "backend": first[label].get("backend"),
        "batching": first[label].get("batching"),
        "why": why,
    }


def _names(entries: list[dict[str, Any]]) -> str:
    labels = list(dict.fromkeys(e["label"] for e in entries))
    return ", ".join(labels[:6]) + (f" and {len(labels) - 6} more" if len(labels) > 6 else "")


def verdict(summary: dict[str, Any]) -> str:
    """A plain-language paragraph computed from the numbers."""
    configs: list[dict[str, Any]] = summary["configs"]
    thresholds = summary["thresholds"]
    host_cpus = summary["host_cpus"]
    if not configs:
        return "Nothing was measured."
    slo = thresholds.get("slo_p95_ms")
    limit = thresholds.get("max_failure_ratio")
    slo_text = (f"p95 ≤ {slo:g} ms and " if slo is not None else "") + f"failures ≤ {limit:.1%}"
    sentences: list[str] = []
    rec = summary.get("recommended")
    if rec:
        knee = (summary.get("knee") or {}).get(rec["label"]) or {}
        at_knee = [
            c
            for c in configs
            if c["stack_label"] == rec["label"]
            and c["slo_met"]
            and (c.get("users"), c.get("target_rps")) == (knee.get("users"), knee.get("target_rps"))
        ]
        entry = max(at_knee, key=lambda c: c["p95_ms"] or 0)
        sentences.append(
            f"Recommended: {rec['label']} ({rec['replicas']} replica(s)), which {rec['why']}: "
            f"{rec['capacity']:.1f} req/s with {slo_text} (p95 {entry['p95_ms']:g} ms at that load)."
        )
    elif not any(c.get("status") == "complete" for c in configs):
        sentences.append("No measurement ran to its end, so no configuration can be recommended.")
    else:
        measured = [c for c in configs if c.get("p95_ms") is not None and c.get("status") == "complete"]
        best = min(measured, key=lambda c: c["p95_ms"]) if measured else None
        text = f"No configuration met {slo_text}"
        if thresholds.get("need_rps"):
            text += f" at {thresholds['need_rps']:g} req/s"
        if best:
            text += f"; the lowest p95 was {best['p95_ms']:g} ms ({best['label']}, {best['rps']:.1f} req/s)"
        sentences.append(text + ".")
    efficiency = summary.get("scaling_efficiency", {})
    by_label = {c["stack_label"]: c for c in configs}
    for label, eff in efficiency.items():
        if label == eff["base"] or eff["efficiency"] is None:
            continue
        base = efficiency[eff["base"]]
        cores = [c.get("cpu_cores_used") for c in configs if c["stack_label"] == label]
        used = max((c for c in cores if c is not None), default=None)
        sentence = (
            f"From {eff['base']} to {label}, throughput went from {base['rps']:.1f} to "
            f"{eff['rps']:.1f} req/s (scaling efficiency {eff['efficiency']:.0%})"
        )
        if used is not None and used >= MACHINE_CPU_FRACTION * host_cpus:
            sentence += (
                f"; the classifiers already used {used:.2f} of the machine's {host_cpus} cores, "
                "so the machine, not the replica count, was the limit"
            )
        elif eff["efficiency"] < 0.75 and by_label[label].get("generator_saturated"):
            sentence += "; the load generator was saturated, so this understates the replicas"
        sentences.append(sentence + ".")
    saturated = [c for c in configs if c.get("generator_saturated")]
    if saturated:
        sentences.append(
            f"A Locust worker went above {GENERATOR_CPU_LIMIT_PCT:.0f} % CPU in {_names(saturated)}: "
            "there the generator, not the service, may have been the limit "
            "(add workers: --locust-workers N)."
        )
    machine = [c for c in configs if c.get("machine_cpu_saturated")]
    if machine and not any("machine" in s for s in sentences):
        busiest = max((c.get("host_busy_cores") or c.get("total_cores_used") or 0) for c in machine)
        sentences.append(
            f"In {_names(machine)} the machine's {host_cpus} cores were nearly all busy (up to "
            f"{busiest:.2f} cores, the load generator and any other process included): more replicas "
            "cannot add throughput there; give each replica its own cores (cpus/cpuset) for a fair "
            "comparison."
        )
    behind = [c for c in configs if c.get("fell_behind")]
    if behind:
        sentences.append(
            f"The arrivals fell behind the target rate (achieved < {FELL_BEHIND_RATIO:.0%}) "
            f"in {_names(behind)}: "
            "latency there is measured at a lower load than asked (coordinated omission); "
            + (
                "the generator was saturated."
                if any(c.get("generator_saturated") for c in behind)
                else "the service could not keep up, or too few users: raise --expected-latency-ms."
            )
        )
    failed = [c for c in configs if (c.get("failure_ratio") or 0) > (limit or 0)]
    if failed:
        sentences.append(f"Failures exceeded {limit:.1%} in {_names(failed)}.")
    partial = [
        c for c in configs if c.get("replicas_served") is not None and c["replicas_served"] < c["replicas"]
    ]
    if partial and summary.get("stack") == "compose":
        sentences.append(f"Not every replica answered requests in {_names(partial)} (see served-by counts).")
    interrupted = [c for c in configs if c.get("status") != "complete"]
    if interrupted:
        sentences.append(f"Incomplete measurements (not counted): {_names(interrupted)}.")
    return " ".join(sentences)


def unmet_reason(summary: dict[str, Any]) -> str | None:
    """Why the command-line thresholds fail the run (k6-style), or None when some configuration met them."""
    if not summary["configs"]:
        return "nothing was measured"
    need = summary["thresholds"].get("need_rps")
    if need is not None and summary.get("recommended") is None:
        return f"no configuration served {need:g} req/s within the thresholds"
    if summary["slo_met_by_any"]:
        return None
    lines = [f"{c['label']}: {'; '.join(c['slo_reasons'])}" for c in summary["configs"]]
    return "no configuration met the thresholds:\n  " + "\n  ".join(lines)
