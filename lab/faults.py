"""Faults as part of a measurement: the fault kinds (one record each, in FAULT_KINDS), what `--fault SPEC`
means, how a kind is applied through the few docker operations a stack offers (FaultOps), and the thread
that applies each fault at its time offset and writes down what it did (faults.json). The analysis of
what a fault did to the traffic is lab.timeline's; it reads the kind's record too.

SPEC is `KIND[=ARG]@OFFSET`, the offset counted from the start of the measurement (not of the warm-up);
`lab compare --help` lists the kinds with an example each (`fault_help()`). Adding a kind is one
`FaultKind` record here: parsing, the CLI help, the compose stack and the timeline all read it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab.services import CLASSIFIER, LOCUST_WORKER, NGINX
from lab.units import parse_duration

_SPEC = re.compile(r"^(?P<kind>[a-z-]+)(?:=(?P<arg>[^@]+))?@(?P<at>.+)$")


class FaultError(RuntimeError):
    pass


class FaultOps(Protocol):
    """The docker operations a stack offers fault kinds to act with (ComposeStack has them)."""

    def running(self, service: str) -> list[str]:
        """Names of the service's running containers, sorted (the last is the highest-numbered)."""
        ...

    def docker(self, *args: str) -> None:
        """Run `docker ARGS...` on the stack's engine; a failure raises."""
        ...

    def sigkill(self, container: str) -> str:
        """SIGKILL of the container's main process; returns how it was sent."""
        ...

    def scale(self, service: str, count: int) -> None: ...


class NodeOps(Protocol):
    """What a stack of several nodes offers the node fault kinds (SwarmStack with a nodes file has them)."""

    def kill_node(self, node: str) -> str:
        """The node gone at once, as a host crash; returns how."""
        ...

    def disconnect_node(self, node: str) -> str:
        """The node cut off from the other nodes' network; returns how."""
        ...

    def connect_node(self, node: str) -> None: ...


@dataclass(frozen=True)
class FaultArg:
    """What a kind's `=ARG` is: its name in messages, an example, and its parser, which returns the
    FaultSpec fields it fills (raises ValueError saying what is wrong). `lasts`: the ARG holds a duration,
    after which the fault is ended (FaultKind.end)."""

    name: str
    example: str
    parse: Callable[[str], dict[str, Any]]
    lasts: bool = False


def _replica_count(text: str) -> dict[str, Any]:
    if not text.isdigit() or int(text) < 1:
        raise ValueError("the replica count must be a whole number >= 1")
    return {"count": int(text)}


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("the fault must last > 0 s")
    return seconds


_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _node(text: str) -> dict[str, Any]:
    if not _NODE_NAME.match(text):
        raise ValueError(f"{text!r} is not a node name (`docker node ls` lists them)")
    return {"node": text}


def _node_for(text: str) -> dict[str, Any]:
    node, _, duration = text.rpartition(":")
    if not node:
        raise ValueError("want NODE:DURATION, e.g. node-b:15s")
    return {**_node(node), "duration_s": _positive_duration(duration)}


COUNT = FaultArg("count", "1", _replica_count)
# A kind whose ARG holds a duration lasts that long and is then ended (FaultKind.end).
DURATION = FaultArg("duration", "10s", lambda text: {"duration_s": _positive_duration(text)}, lasts=True)
NODE = FaultArg("node", "node-b", _node)
NODE_FOR = FaultArg("node:duration", "node-b:15s", _node_for, lasts=True)

# What a kind acts on: a service's containers, through the stack's FaultOps (compose), or a whole node
# of a multi-node swarm, through its NodeOps (the swarm stack with a nodes file).
CONTAINERS, NODES = "containers", "nodes"


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault: what it acts on, what it takes, what it means for the analysis, how it is done.

    `act(ops, target, spec)` does it and returns the detail written to faults.json; `target` is the
    container chosen (the service's highest-numbered running one, the one a scale-down would remove too),
    the service itself when `whole_service`, or the node the spec names for a kind that acts on NODES
    (then `ops` is a NodeOps). A kind whose ARG holds a duration lasts: `end(ops, target)` ends it when
    the duration is over, or when the measurement stops."""

    name: str
    help: str
    target: str  # the compose service it acts on (a node kind: the replicas', which it may take away)
    act: Callable[[Any, str, FaultSpec], str]
    arg: FaultArg | None = None
    removes_replica: bool = False  # takes a classifier replica away (the rest act on nginx or Locust)
    end: Callable[[Any, str], None] | None = None
    whole_service: bool = False
    acts_on: str = CONTAINERS
    # `act` returns once the target runs again (docker restart): its start time, the stack's "started"
    # event, is read at once, so that a later fault on the same container cannot overwrite it.
    restarts: bool = False

    def __post_init__(self) -> None:
        if (self.end is not None) != self.lasts:
            raise ValueError(f"fault kind {self.name}: a kind with a duration needs an end, and only it")

    @property
    def lasts(self) -> bool:
        return self.arg is not None and self.arg.lasts

    @property
    def example(self) -> str:
        return f"{self.name}{'=' + self.arg.example if self.arg else ''}@30s"

    @property
    def on_load_generator(self) -> bool:
        """It hits a Locust worker: the timeline reports what the master did about it."""
        return self.target == LOCUST_WORKER

    def replicas_expected(self, spec: FaultSpec, replicas: int) -> int | None:
        """Replicas that should serve after it: the count it scaled to, else the configuration's (Docker
        restarts a killed one, the pause ends); None for a fault that leaves the replicas alone."""
        if not self.removes_replica:
            return None
        return spec.count if spec.count is not None else replicas


def _sigkill(ops: FaultOps, target: str, spec: FaultSpec) -> str:
    return ops.sigkill(target)


def _stop(ops: FaultOps, target: str, spec: FaultSpec) -> str:
    ops.docker("stop", target)
    return "docker stop (SIGTERM, then the grace period)"


def _restart(ops: FaultOps, target: str, spec: FaultSpec) -> str:
    ops.docker("restart", "--time", "2", target)
    return "docker restart"


def _reload(ops: FaultOps, target: str, spec: FaultSpec) -> str:
    # SIGHUP to nginx's master (PID 1 of its container): it reads its config again, starts new workers and
    # lets the old ones finish what they have; the listening socket never closes.
    ops.docker("kill", "--signal", "HUP", target)
    return "SIGHUP to nginx's master (docker kill --signal HUP): a reload"


def _pause(ops: FaultOps, target: str, spec: FaultSpec) -> str:
    ops.docker("pause", target)
    return f"docker pause for {spec.duration_s:g} s"


def _unpause(ops: FaultOps, target: str) -> None:
    ops.docker("unpause", target)


def _kill_node(ops: NodeOps, node: str, spec: FaultSpec) -> str:
    return ops.kill_node(node)


def _partition_node(ops: NodeOps, node: str, spec: FaultSpec) -> str:
    return f"{ops.disconnect_node(node)} for {spec.duration_s:g} s"


def _reconnect_node(ops: NodeOps, node: str) -> None:
    ops.connect_node(node)


def _scale(ops: FaultOps, service: str, spec: FaultSpec) -> str:
    assert spec.count is not None
    ops.scale(service, spec.count)
    return f"{service} scaled to {spec.count}"


_KINDS = (
    FaultKind(
        name="kill-replica",
        help="SIGKILL of one replica's main process, as an OOM kill would do",
        target=CLASSIFIER,
        act=_sigkill,
        removes_replica=True,
    ),
    FaultKind(
        name="stop-replica",
        help="graceful stop of one replica (docker stop: SIGTERM, then the grace period)",
        target=CLASSIFIER,
        act=_stop,
        removes_replica=True,
    ),
    FaultKind(
        name="scale-replicas",
        help="scale the classifier to COUNT replicas",
        target=CLASSIFIER,
        act=_scale,
        arg=COUNT,
        removes_replica=True,
        whole_service=True,
    ),
    FaultKind(
        name="restart-nginx", help="docker restart of nginx", target=NGINX, act=_restart, restarts=True
    ),
    FaultKind(
        name="reload-nginx",
        help="SIGHUP to nginx's master: a configuration reload, which must cost no request",
        target=NGINX,
        act=_reload,
    ),
    FaultKind(
        name="kill-locust-worker",
        help="SIGKILL of one Locust worker's main process",
        target=LOCUST_WORKER,
        act=_sigkill,
    ),
    FaultKind(
        name="pause-replica",
        help="docker pause of one replica for DURATION: a hung process that still holds its connections",
        target=CLASSIFIER,
        act=_pause,
        arg=DURATION,
        removes_replica=True,
        end=_unpause,
    ),
    FaultKind(
        name="kill-node",
        help="the node's host gone at once (its container killed: engine and tasks with it); "
        "it comes back only when the measurement is over",
        target=CLASSIFIER,
        act=_kill_node,
        arg=NODE,
        removes_replica=True,
        acts_on=NODES,
    ),
    FaultKind(
        name="partition-node",
        help="the node cut off from the other nodes for DURATION (docker network disconnect), then back",
        target=CLASSIFIER,
        act=_partition_node,
        arg=NODE_FOR,
        removes_replica=True,
        end=_reconnect_node,
        acts_on=NODES,
    ),
)
FAULT_KINDS: dict[str, FaultKind] = {kind.name: kind for kind in _KINDS}


def fault_kind(name: str) -> FaultKind:
    try:
        return FAULT_KINDS[name]
    except KeyError:
        raise FaultError(f"unknown fault kind {name!r}") from None


def fault_help() -> str:
    """The --fault help: the syntax and every kind's example."""
    examples = ", ".join(kind.example for kind in FAULT_KINDS.values())
    return f"A fault in every measurement, KIND[=ARG]@OFFSET (repeatable): {examples}."


def kinds_acting_on(*targets: str) -> tuple[str, ...]:
    return tuple(name for name, kind in FAULT_KINDS.items() if kind.acts_on in targets)


def apply_fault(ops: Any, spec: FaultSpec) -> tuple[str | None, str]:
    """Do the fault on a stack (`ops`: its FaultOps, or its NodeOps for a node kind); returns (the
    container or node it hit, or None for a whole service; the detail)."""
    kind = fault_kind(spec.kind)
    if kind.acts_on == NODES:
        assert spec.node is not None
        return spec.node, kind.act(ops, spec.node, spec)
    if kind.whole_service:
        return None, kind.act(ops, kind.target, spec)
    containers = ops.running(kind.target)
    if not containers:
        raise FaultError(f"no running {kind.target} container to {kind.name}")
    target = containers[-1]
    return target, kind.act(ops, target, spec)


def end_fault(ops: Any, spec: FaultSpec, target: str | None) -> None:
    kind = fault_kind(spec.kind)
    if kind.end is not None and target:
        kind.end(ops, target)


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    at_s: float
    count: int | None = None  # a COUNT argument
    duration_s: float = 0.0  # a DURATION argument: how long the fault lasts; others are instantaneous
    node: str | None = None  # a NODE argument: the swarm node it acts on

    @property
    def text(self) -> str:
        parts = [
            *([str(self.count)] if self.count is not None else []),
            *([self.node] if self.node is not None else []),
            *([f"{self.duration_s:g}s"] if self.duration_s else []),
        ]
        arg = f"={':'.join(parts)}" if parts else ""
        return f"{self.kind}{arg}@{self.at_s:g}s"

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        match = _SPEC.match(text.strip())
        if not match or match["kind"] not in FAULT_KINDS:
            raise ValueError(
                f"--fault {text!r}: want KIND[=ARG]@OFFSET with KIND one of {', '.join(FAULT_KINDS)} "
                f"(e.g. {', '.join(k.example for k in FAULT_KINDS.values() if k.arg)})"
            )
        kind, arg = FAULT_KINDS[match["kind"]], match["arg"]
        at_s = parse_duration(match["at"])
        if (arg is None) != (kind.arg is None):
            raise ValueError(
                f"--fault {text!r}: {kind.name} "
                + ("takes no =ARG" if kind.arg is None else f"needs ={kind.arg.name}")
            )
        if kind.arg is None or arg is None:
            return cls(kind.name, at_s)
        try:
            fields = kind.arg.parse(arg)
        except ValueError as err:
            raise ValueError(f"--fault {text!r}: {err}") from None
        return cls(kind.name, at_s, **fields)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        return cls(
            str(data["kind"]),
            float(data["at_s"]),
            data.get("count"),
            float(data.get("duration_s") or 0),
            data.get("node"),
        )


def check_fits(specs: list[FaultSpec], duration_s: float) -> None:
    """Every fault must happen, and end, inside the measurement window it belongs to."""
    for spec in specs:
        if spec.at_s <= 0 or spec.at_s + spec.duration_s >= duration_s:
            raise ValueError(
                f"--fault {spec.text}: must start after 0 s and end before the {duration_s:g} s measurement "
                "ends, so its effect and the recovery are measured"
            )


@dataclass
class AppliedFault:
    """What happened when a fault was applied: the record behind every number about it."""

    spec: FaultSpec
    t: float | None = None  # wall clock when applied
    t_end: float | None = None  # wall clock when it ended (pause), else equal to t
    target: str | None = None  # the container it hit
    detail: str = ""
    error: str | None = None
    served_by_at_fault: dict[str, int] | None = None  # X-Served-By counts just before it
    # What the stack saw happen after it, wall clock (a node kind: the manager marked the node Down, its
    # tasks ran elsewhere, the node was Ready again): the stack's fault_events.
    events: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppliedFault:
        fields = {k: data.get(k) for k in ("t", "t_end", "target", "error", "served_by_at_fault")}
        events = {str(k): float(v) for k, v in (data.get("events") or {}).items()}
        return cls(
            spec=FaultSpec.from_dict(data["spec"]),
            detail=str(data.get("detail") or ""),
            events=events,
            **fields,
        )


def read_faults(path: Path) -> list[AppliedFault]:
    if not path.is_file():
        return []
    try:
        return [AppliedFault.from_dict(row) for row in json.loads(path.read_text(encoding="utf-8"))]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return []


class FaultInjector:
    """Applies each fault at `t0 + at_s` in a thread of its own; the measurement goes on meanwhile.

    `inject(spec)` does the docker work and returns (target, detail); `end(spec, target)` ends a lasting
    fault (unpause); `served_by()` reads the master's X-Served-By tally at the moment of the fault;
    `events(spec, target)`, when the measurement stops, what the stack saw happen after each fault.
    """

    def __init__(
        self,
        specs: list[FaultSpec],
        path: Path,
        inject: Callable[[FaultSpec], tuple[str | None, str]],
        end: Callable[[FaultSpec, str | None], None],
        served_by: Callable[[], dict[str, Any] | None],
        events: Callable[[FaultSpec, str | None], dict[str, float]] | None = None,
    ) -> None:
        self.specs = sorted(specs, key=lambda s: s.at_s)
        self.path = path
        self._inject, self._end, self._served_by = inject, end, served_by
        self._events = events
        self.applied: list[AppliedFault] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_end: list[AppliedFault] = []

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(t0,), name="faults", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop applying faults and end any that still lasts (a pause must never outlive its measurement)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        for record in self._pending_end:
            self._finish(record)
        self._pending_end.clear()
        for record in self.applied:
            self._watch(record)
        self._write()

    def _watch(self, record: AppliedFault) -> None:
        """Add what the stack saw happen after the fault; an event read earlier (at a restart) stands, and
        one from before the fault (a container started long ago) is not its doing."""
        if self._events is None or record.error is not None or record.t is None:
            return
        try:
            seen = self._events(record.spec, record.target)
        except Exception as err:  # the fault and the measurement stand without them
            record.detail += f" (watching what followed failed: {type(err).__name__}: {err})"
            return
        record.events = {**{k: t for k, t in seen.items() if t >= record.t}, **record.events}

    def _run(self, t0: float) -> None:
        for spec in self.specs:
            if self._stop.wait(max(0.0, t0 + spec.at_s - time.time())):
                return
            record = AppliedFault(spec)
            self.applied.append(record)
            try:
                counts = self._served_by()
                record.served_by_at_fault = {str(k): int(v) for k, v in (counts or {}).items()}
                record.t = time.time()
                record.target, record.detail = self._inject(spec)
            except Exception as err:  # recorded: the measurement goes on, the report says it failed
                record.error = f"{type(err).__name__}: {err}"
            if fault_kind(spec.kind).restarts:
                self._watch(record)
            if fault_kind(spec.kind).lasts and record.error is None:
                self._pending_end.append(record)
                if self._stop.wait(spec.duration_s):
                    return
                self._pending_end.remove(record)
                self._finish(record)
            else:
                record.t_end = record.t
            self._write()

    def _finish(self, record: AppliedFault) -> None:
        try:
            self._end(record.spec, record.target)
        except Exception as err:
            record.error = f"ending it failed: {type(err).__name__}: {err}"
        record.t_end = time.time()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([r.to_dict() for r in self.applied], indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)
