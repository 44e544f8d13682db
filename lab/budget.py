"""CPU budgets per replica: what each replica used against its budget and how often the quota stopped it
(from the cgroup samples, lab/cgroups.py), whether the budgets were real on this machine, and `--pin`'s
cpusets.

A budget is a CFS quota: it caps a replica, it does not reserve a core for it. The budgets are real only
when the machine has the cores to honour them all at once: replicas x budget plus what the load generator
and nginx used must fit in the host's cores, or the replicas also wait for cores beyond their quota and a
comparison of replica counts measures the machine again.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.grid import ExperimentSettings
from lab.limits import BUDGET_OVERRUN_TOLERANCE
from lab.units import name_list

CLASSIFIER_SERVICE = "classifier"


@dataclass(frozen=True)
class ContainerCpu:
    """One container over one measurement, from its cgroup's counters (differences between samples)."""

    container: str
    service: str
    budget_cores: float | None  # its CFS quota in cores (None: no limit)
    mean_cores: float | None  # CPU time used / wall time sampled
    sampled_s: float
    periods: int  # CFS periods it ran under a quota
    throttled_periods: int  # of those, periods it was stopped in for having spent its quota
    throttled_s: float  # time its processes were stopped for that

    @property
    def throttled_share(self) -> float | None:
        return self.throttled_periods / self.periods if self.periods else None

    @property
    def over_budget(self) -> bool:
        return (
            self.budget_cores is not None
            and self.mean_cores is not None
            and self.mean_cores > self.budget_cores * (1 + BUDGET_OVERRUN_TOLERANCE)
        )

    def to_dict(self) -> dict[str, Any]:
        share = self.throttled_share
        return {
            **asdict(self),
            "throttled_share": round(share, 4) if share is not None else None,
            "over_budget": self.over_budget,
        }


@dataclass(frozen=True)
class CpuBudget:
    """A measurement's CPU budgets: each replica against its own, and what the rest of the stack used."""

    host_cpus: int
    asked_cores: float | None  # CLASSIFIER_CPUS of the configuration (None or 0: no budget asked)
    replicas: list[ContainerCpu] = field(default_factory=list)
    others: list[ContainerCpu] = field(default_factory=list)  # nginx, Locust master and workers

    @property
    def budget_cores(self) -> float | None:
        """The replicas' quota as the kernel enforced it (the largest, should they differ)."""
        quotas = [r.budget_cores for r in self.replicas if r.budget_cores is not None]
        return max(quotas) if quotas else None

    @property
    def others_cores(self) -> float:
        return sum(o.mean_cores or 0.0 for o in self.others)

    @property
    def committed_cores(self) -> float | None:
        """Replicas x budget plus what the generator and nginx used: the cores the budgets needed."""
        budget = self.budget_cores
        return len(self.replicas) * budget + self.others_cores if budget is not None else None

    @property
    def real(self) -> bool | None:
        committed = self.committed_cores
        return committed <= self.host_cpus if committed is not None else None

    @property
    def not_applied(self) -> bool:
        """A budget was asked for, but a replica ran without a quota (or another one)."""
        if not self.asked_cores or not self.replicas:
            return False
        return any(
            r.budget_cores is None or not math.isclose(r.budget_cores, self.asked_cores, rel_tol=0.01)
            for r in self.replicas
        )

    def to_dict(self) -> dict[str, Any]:
        committed = self.committed_cores
        return {
            "host_cpus": self.host_cpus,
            "asked_cores": self.asked_cores,
            "budget_cores": self.budget_cores,
            "replicas": [r.to_dict() for r in self.replicas],
            "others": [o.to_dict() for o in self.others],
            "others_cores": round(self.others_cores, 3),
            "committed_cores": round(committed, 3) if committed is not None else None,
            "real": self.real,
            "not_applied": self.not_applied,
        }


def _container_cpu(rows: list[dict[str, Any]]) -> ContainerCpu:
    rows = sorted(rows, key=lambda r: r["t"])
    used = wall = throttled = 0.0
    periods = stopped = 0
    for before, after in itertools.pairwise(rows):
        d_usage = after["usage_s"] - before["usage_s"]
        d_periods = after["nr_periods"] - before["nr_periods"]
        # A restarted container (a kill fault) has a new process, maybe a new cgroup: its counters start
        # again, so the interval across the restart is left out rather than counted negative.
        if after["pid"] != before["pid"] or d_usage < 0 or d_periods < 0:
            continue
        wall += after["t"] - before["t"]
        used += d_usage
        periods += d_periods
        stopped += after["nr_throttled"] - before["nr_throttled"]
        throttled += after["throttled_s"] - before["throttled_s"]
    last = rows[-1]
    return ContainerCpu(
        container=str(last["container"]),
        service=str(last.get("service", "")),
        budget_cores=last.get("quota_cores"),
        mean_cores=round(used / wall, 3) if wall > 0 else None,
        sampled_s=round(wall, 2),
        periods=periods,
        throttled_periods=stopped,
        throttled_s=round(throttled, 3),
    )


def cpu_budget(samples: list[dict[str, Any]], host_cpus: int, asked_cores: float | None) -> CpuBudget | None:
    """From cgroup_cpu.jsonl's lines (error lines skipped); None when no container could be read."""
    by_container: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in samples:
        if "usage_s" in row and "container" in row:
            by_container[str(row["container"])].append(row)
    if not by_container:
        return None
    containers = [_container_cpu(rows) for _, rows in sorted(by_container.items())]
    return CpuBudget(
        host_cpus=host_cpus,
        asked_cores=asked_cores or None,
        replicas=[c for c in containers if c.service == CLASSIFIER_SERVICE],
        others=[c for c in containers if c.service != CLASSIFIER_SERVICE],
    )


def asked_budget(env: dict[str, Any]) -> float | None:
    """The budget a configuration asked for, from the CLASSIFIER_* environment it exported."""
    try:
        value = float(env.get("CLASSIFIER_CPUS") or 0)
    except ValueError:
        return None
    return value if value > 0 else None


def budget_sentences(entries: list[tuple[str, CpuBudget | None]], host_cpus: int) -> list[str]:
    """The verdict's sentences about budgets, from each measurement's label and CpuBudget."""
    measured = [(label, b) for label, b in entries if b is not None]
    sentences = []
    unreal = [(label, b) for label, b in measured if b.real is False]
    if unreal:
        label, worst = max(unreal, key=lambda e: e[1].committed_cores or 0.0)
        sentences.append(
            f"In {name_list([lb for lb, _ in unreal])} the budgets were not real: {len(worst.replicas)} "
            f"replica(s) x {worst.budget_cores:g} cores plus the {worst.others_cores:.2f} cores the load "
            f"generator and nginx used come to {worst.committed_cores:.2f} of the machine's {host_cpus} "
            f"cores ({label}), so the replicas also waited for cores beyond their quota: fewer replicas, "
            "smaller budgets, or a machine with more cores."
        )
    missing = [label for label, b in measured if b.not_applied]
    if missing:
        sentences.append(
            f"In {name_list(missing)} a replica ran without the CPU budget asked for (its cgroup had another "
            "quota or none): its numbers are not those of the budget."
        )
    throttled = [(label, r) for label, b in measured for r in b.replicas if r.throttled_share]
    if throttled:
        label, worst = max(throttled, key=lambda e: e[1].throttled_share or 0.0)
        sentences.append(
            f"The CPU quota stopped replicas in up to {worst.throttled_share:.0%} of their CFS periods "
            f"({worst.container} in {label}: {worst.throttled_s:.1f} s throttled in "
            f"{worst.sampled_s:.0f} s), "
            "which adds to the tail latency: read p99 with it."
        )
    over = [label for label, b in measured for r in b.replicas if r.over_budget]
    if over:
        sentences.append(
            f"In {name_list(over)} a replica used more than its budget "
            f"(by over {BUDGET_OVERRUN_TOLERANCE:.0%}): the quota did not hold it."
        )
    return sentences


BUDGET_HEADER = [
    "Measurement",
    "Replica",
    "Budget cores",
    "Mean cores used",
    "Periods throttled",
    "Throttled s",
    "Generator + nginx cores",
    "Budgets real",
]


def budget_rows(entries: list[tuple[str, CpuBudget | None]]) -> list[list[str]]:
    """One row per replica per measurement, for the report's CPU budget table."""
    rows = []
    for label, b in entries:
        if b is None:
            continue
        real = {True: "yes", False: f"no: {b.committed_cores or 0:.2f} > {b.host_cpus}", None: "no budget"}
        for r in b.replicas:
            share = r.throttled_share
            rows.append(
                [
                    label,
                    r.container,
                    f"{r.budget_cores:g}" if r.budget_cores is not None else "none",
                    f"{r.mean_cores:.2f}" if r.mean_cores is not None else "—",
                    f"{share:.1%} of {r.periods}" if share is not None else "—",
                    f"{r.throttled_s:.2f}",
                    f"{b.others_cores:.2f}",
                    real[b.real],
                ]
            )
    return rows


BUDGET_NOTE = (
    "From each container's cgroup (cgroup_cpu.jsonl: cpu.stat and the CFS quota, sampled with docker "
    "stats). Mean cores used: CPU time over the time sampled. Periods throttled: the share of CFS periods "
    "(100 ms each by default) in which the replica had spent its quota and was stopped, and for how long "
    "in all. The budgets are real when replicas x budget plus what the generator and nginx used fit in "
    "the machine's cores."
)


# ---- --pin: each replica on its own cores, the rest of the stack on the others ------------------------


@dataclass(frozen=True)
class Cpusets:
    replicas: list[str]  # cpuset of replica 1, 2, ... (docker update --cpuset-cpus)
    rest: str  # nginx and Locust


def _span(first: int, count: int) -> str:
    return str(first) if count == 1 else f"{first}-{first + count - 1}"


def cpusets(replicas: int, cpus: float, host_cpus: int) -> Cpusets:
    """Whole cores per replica (the budget rounded up), then at least one core for nginx and Locust."""
    per = max(1, math.ceil(cpus))
    needed = replicas * per + 1
    if needed > host_cpus:
        raise ValueError(
            f"--pin needs {replicas} replica(s) x {per} core(s) + 1 core for nginx and Locust = {needed} "
            f"cores; this machine has {host_cpus}: drop --pin (the budgets then share the cores) or measure "
            "fewer replicas"
        )
    sets = [_span(k * per, per) for k in range(replicas)]
    return Cpusets(sets, _span(replicas * per, host_cpus - replicas * per))


def check_pin(settings: ExperimentSettings, host_cpus: int) -> None:
    """Before a run: every configuration of the grid can be pinned on this machine (else ValueError)."""
    for count in settings.replicas:
        for budget in settings.cpus_per_replica:
            if budget is not None:
                cpusets(count, budget, host_cpus)


def pin_containers(
    update: Callable[[str, list[str]], object], replicas: list[str], others: list[str], sets: Cpusets
) -> dict[str, str]:
    """`update(cpuset, containers)` runs `docker update --cpuset-cpus`: replica k on its own cores, every
    other container of the stack on the rest. Returns the cpuset each container got, for the record."""
    pinned = dict(zip(replicas, sets.replicas, strict=True))
    for name, cpuset in pinned.items():
        update(cpuset, [name])
    if others:
        update(sets.rest, others)
    return {**pinned, **dict.fromkeys(others, sets.rest)}
