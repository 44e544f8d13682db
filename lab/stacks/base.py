"""What `lab compare` needs of a serving stack, in four small protocols, and the record of what differs
between kinds of stack (StackKind): the cost of a configuration change, whether the machine's CPU is
sampled, whether lab sets the replica count, which faults it can inject. The driver reads those fields;
nothing compares kind names."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab.faults import CONTAINERS, NODES, FaultSpec, kinds_acting_on
from lab.grid import ExperimentSettings, StackConfig

LOCUST_WEB_CONTAINER_PORT = 8089


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class StackKind:
    """What differs between kinds of stack, as data."""

    name: str  # --stack NAME, and run.json's stack_kind
    help: str  # for --stack's help
    change_s: float  # seconds a configuration change costs (replicas replaced: model load, warm-up)
    samples_host_cpu: bool  # lab runs on the Docker host: the machine's busy cores are the stack's
    sets_replicas: bool  # lab scales the classifier itself: a replica that served nothing is news
    nodes: int | None  # machines measured when the stack records no node list (compose: this one)
    injects_faults: bool  # lab acts on the stack's containers with docker (FaultOps)
    pins_cpus: bool = False  # --pin: lab can put each container on its own cpuset (docker update)
    injects_node_faults: bool = False  # lab acts on whole nodes (NodeOps), given how to reach them

    @property
    def fault_kinds(self) -> tuple[str, ...]:
        targets = [CONTAINERS] * self.injects_faults + [NODES] * self.injects_node_faults
        return kinds_acting_on(*targets)


# A run.json written by a stack kind this lab no longer has (or none): nothing assumed.
UNKNOWN_KIND = StackKind("unknown", "", 0.0, False, False, None, False)


@dataclass
class StackState:
    """What was running before the experiment, enough to put it back."""

    replicas: dict[str, int] = field(default_factory=dict)  # running containers per service
    classifier_env: dict[str, str] = field(default_factory=dict)  # CLASSIFIER_* of a running replica
    existed: bool = True  # any container of the project, running or not
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "classifier_env": self.classifier_env,
            "existed": self.existed,
            **self.details,
        }


# How long a configuration may take to have every replica healthy: a TF replica loads and warms its model
# in 20-60 s on a busy 2-core machine, several at once take longer.
DEFAULT_READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class StackOptions:
    """Everything the factory (lab.stacks.make_stack) may pass to a kind; each takes what it needs."""

    project_dir: Path
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    project_name: str | None = None  # compose
    locust_url: str | None = None  # external
    expect_workers: int | None = None  # external
    nodes_file: Path | None = None  # swarm: how to reach each node (lab.nodes)
    env: Mapping[str, str] | None = None
    docker: str = "docker"


class SetUp(Protocol):
    """Bring the stack to each configuration and put it back as it was."""

    def capture(self) -> StackState: ...

    def ensure_up(self, state: StackState) -> None: ...

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]: ...

    def scale_locust_workers(self, workers: int) -> None: ...

    def locust_worker_count(self) -> int | None: ...

    def restore(self, state: StackState) -> None: ...


class Sampling(Protocol):
    """What a sampler calls every few seconds during a measurement."""

    def container_stats(self) -> list[dict[str, Any]]: ...

    def process_stats(self) -> list[dict[str, Any]]: ...

    def cgroup_targets(self) -> list[dict[str, Any]]: ...


class Description(Protocol):
    """What the run's record says about the stack."""

    def describe(self) -> dict[str, Any]: ...

    def classifier_settings(self) -> dict[str, str]: ...

    def host_cpus(self) -> int: ...

    def locust_url(self) -> str | None: ...

    def prometheus_url(self) -> str | None:
        """The monitoring profile's Prometheus, reachable from here; None when it is not up."""
        ...

    def replica_addresses(self) -> dict[str, str]:
        """Each running replica's address (as Prometheus's `instance` has it, without the port) -> its
        hostname (what it puts in X-Served-By)."""
        ...


class Faults(Protocol):
    def refuse_faults(self, specs: list[FaultSpec]) -> str | None:
        """Why this stack cannot inject these faults, asked before a run (its kind allowing them); None
        when it can."""
        ...

    def inject_fault(self, spec: FaultSpec) -> tuple[str | None, str]: ...

    def end_fault(self, spec: FaultSpec, target: str | None) -> None: ...

    def fault_events(self, spec: FaultSpec, target: str | None) -> dict[str, float]:
        """When the measurement stops: what the stack saw happen after the fault (name -> wall clock)."""
        ...

    def heal(self, replicas: int, locust_workers: int | None) -> None:
        """After a measurement with faults: the configuration's replicas healthy, nginx and workers up."""
        ...


class Stack(SetUp, Sampling, Description, Faults, Protocol):
    kind: StackKind


class NoFaults:
    """For stacks lab does not inject faults into or sample processes of (StackKind.injects_faults is
    False: `lab compare` refuses --fault on them before a run, so these are only the last line)."""

    def refuse_faults(self, specs: list[FaultSpec]) -> str | None:
        return "this stack injects no faults" if specs else None

    def inject_fault(self, spec: FaultSpec) -> tuple[str | None, str]:
        raise StackError(f"this stack cannot inject {spec.kind}")

    def end_fault(self, spec: FaultSpec, target: str | None) -> None:
        return None

    def fault_events(self, spec: FaultSpec, target: str | None) -> dict[str, float]:
        return {}

    def heal(self, replicas: int, locust_workers: int | None) -> None:
        return None

    def process_stats(self) -> list[dict[str, Any]]:
        return []

    def cgroup_targets(self) -> list[dict[str, Any]]:
        return []


def classifier_env_for(
    config: StackConfig, settings: ExperimentSettings, base: Mapping[str, str]
) -> dict[str, str]:
    """The CLASSIFIER_* variables that give `config`, starting from `base` (the stack's settings before
    the run, so that a dimension the grid leaves alone keeps its original value)."""
    env = dict(base)
    env["CLASSIFIER_REPLICAS"] = str(config.replicas)
    if config.workers_per_replica is not None:
        env["CLASSIFIER_WORKERS"] = str(config.workers_per_replica)
    if config.backend is not None:
        env["CLASSIFIER_BACKEND"] = config.backend
    if config.cpus_per_replica is not None:
        env["CLASSIFIER_CPUS"] = f"{config.cpus_per_replica:g}"  # the limit, and the threads derived from it
    if config.batching == "off":
        env["CLASSIFIER_MAX_BATCH_SIZE"] = "1"
    elif config.batching == "on":
        env["CLASSIFIER_MAX_BATCH_SIZE"] = str(settings.max_batch_size)
        if settings.max_batch_delay_ms is not None:
            env["CLASSIFIER_MAX_BATCH_DELAY_MS"] = f"{settings.max_batch_delay_ms:g}"
    return env


def git_sha(directory: Path) -> str | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha
