"""The samples taken during a measurement (docker stats, the Locust master's live view, the host's busy
cores), read back from their JSON-lines files and reduced to per-measurement numbers; and the reading of
the run's raw JSON files."""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.limits import CONTAINERS_CPU_FRACTION, MACHINE_CPU_FRACTION
from lab.services import CLASSIFIER as CLASSIFIER_SERVICE
from lab.services import LOCUST_WORKER as GENERATOR_SERVICE

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


def read_json(path: Path) -> dict[str, Any]:
    """A raw JSON object file, or {} when it is missing or cut short (a run stopped while writing)."""
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, ValueError):
        return {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by Ctrl-C
    return rows


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


@dataclass(frozen=True)
class ContainerMetrics:
    """CPU and memory of one measurement from its docker-stats samples."""

    cpu_cores_used: float | None = None  # the classifier replicas' summed CPU, mean over sampling times
    total_cores_used: float | None = None  # every container's summed CPU, mean over sampling times
    mem_mb: float | None = None  # the replicas' summed memory, highest sample
    cpu_by_container: dict[str, float] = field(default_factory=dict)  # mean CPU % per container
    service_by_container: dict[str, str] = field(default_factory=dict)
    # Samples that name their node (the swarm stack): each container's node, and each node's containers'
    # summed CPU in cores, mean over the sampling times.
    node_by_container: dict[str, str] = field(default_factory=dict)
    cpu_by_node: dict[str, float] = field(default_factory=dict)
    generator_cpu_max_pct: float | None = None  # the busiest Locust worker container's highest sample
    samples: int = 0

    def machine_saturated(self, host_cpus: int) -> bool:
        classifiers = (
            self.cpu_cores_used is not None and self.cpu_cores_used >= MACHINE_CPU_FRACTION * host_cpus
        )
        everything = (
            self.total_cores_used is not None and self.total_cores_used >= CONTAINERS_CPU_FRACTION * host_cpus
        )
        return classifiers or everything


@dataclass
class _Reading:
    service: str
    cpu: float | None
    mem: float | None
    node: str | None = None


def container_metrics(samples: list[dict[str, Any]]) -> ContainerMetrics:
    """One JSON line per container per sampling time (error lines are skipped)."""
    by_time: dict[float, list[_Reading]] = defaultdict(list)
    per_container: dict[str, list[float]] = defaultdict(list)
    service_of: dict[str, str] = {}
    node_of: dict[str, str] = {}
    generator: list[float] = []
    for sample in samples:
        raw = sample.get("raw")
        if not isinstance(raw, dict):
            continue
        cpu = parse_cpu_pct(raw.get("CPUPerc", ""))
        name = str(raw.get("Name", ""))
        service = str(sample.get("service", ""))
        service_of[name] = service
        node = str(sample["node"]) if sample.get("node") else None
        if node is not None:
            node_of[name] = node
        by_time[sample["t"]].append(_Reading(service, cpu, parse_mem_mb(raw.get("MemUsage", "")), node))
        if cpu is not None:
            per_container[name].append(cpu)
            if service == GENERATOR_SERVICE:
                generator.append(cpu)
    if not by_time:
        return ContainerMetrics()
    classifier_cores: list[float] = []
    classifier_mem: list[float] = []
    all_cores: list[float] = []
    node_cores: dict[str, list[float]] = defaultdict(list)
    for readings in by_time.values():
        # A node without a row at this time (its engine did not answer) is left out, not counted as idle.
        for node in {r.node for r in readings if r.node is not None}:
            node_cores[node].append(sum(r.cpu or 0.0 for r in readings if r.node == node) / 100.0)
        replicas = [r for r in readings if r.service == CLASSIFIER_SERVICE]
        if replicas:
            classifier_cores.append(sum(r.cpu or 0.0 for r in replicas) / 100.0)
            classifier_mem.append(sum(r.mem or 0.0 for r in replicas))
        all_cores.append(sum(r.cpu or 0.0 for r in readings) / 100.0)
    cpu_by_container = {
        name: round(statistics.fmean(values), 1) for name, values in sorted(per_container.items()) if values
    }
    return ContainerMetrics(
        cpu_cores_used=round(statistics.fmean(classifier_cores), 3) if classifier_cores else None,
        total_cores_used=round(statistics.fmean(all_cores), 3),
        mem_mb=round(max(classifier_mem), 1) if classifier_mem else None,
        cpu_by_container=cpu_by_container,
        service_by_container={name: service_of[name] for name in cpu_by_container},
        node_by_container={name: node_of[name] for name in cpu_by_container if name in node_of},
        cpu_by_node={node: round(statistics.fmean(v), 3) for node, v in sorted(node_cores.items())},
        generator_cpu_max_pct=max(generator) if generator else None,
        samples=len(by_time),
    )


def locust_worker_cpu_max(live: list[dict[str, Any]]) -> float | None:
    """Max CPU a worker reported to the master (psutil, sampled by Locust's heartbeat)."""
    values = [
        float(w["cpu_usage"])
        for row in live
        for w in row.get("workers") or []
        if isinstance(w, dict) and w.get("cpu_usage") is not None
    ]
    return max(values) if values else None


def host_busy_cores(samples: list[dict[str, Any]]) -> float | None:
    """Mean busy cores of the whole machine over the measurement (lab.sampler.HostCpu's lines)."""
    values = [float(r["busy_cores"]) for r in samples if "busy_cores" in r]
    return round(statistics.fmean(values), 3) if values else None
