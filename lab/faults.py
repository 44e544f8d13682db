"""Faults as part of a measurement: what `--fault SPEC` means, and the thread that applies each fault at
its time offset and writes down what it did (faults.json). The stack does the docker work
(`Stack.inject_fault` / `Stack.heal`); the analysis of what a fault did to the traffic is lab.timeline's.

SPEC is `KIND[=ARG]@OFFSET`, the offset counted from the start of the measurement (not of the warm-up):
  kill-replica@30s         SIGKILL of one replica's main process, as an OOM kill would do
  stop-replica@30s         graceful stop of one replica (docker stop: SIGTERM, then the grace period)
  scale-replicas=1@30s     scale the classifier to 1 replica
  restart-nginx@30s        docker restart of nginx
  kill-locust-worker@30s   SIGKILL of one Locust worker's main process
  pause-replica=10s@30s    docker pause of one replica for 10 s: a hung process that still holds its
                           connections
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.units import parse_duration

# kind -> what its ARG is: None (no argument), "count" or "duration".
KINDS: dict[str, str | None] = {
    "kill-replica": None,
    "stop-replica": None,
    "scale-replicas": "count",
    "restart-nginx": None,
    "kill-locust-worker": None,
    "pause-replica": "duration",
}
# Faults that take a classifier replica away (the rest act on nginx or the load generator).
REPLICA_FAULTS = ("kill-replica", "stop-replica", "pause-replica", "scale-replicas")
_SPEC = re.compile(r"^(?P<kind>[a-z-]+)(?:=(?P<arg>[^@]+))?@(?P<at>.+)$")


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    at_s: float
    count: int | None = None  # scale-replicas
    duration_s: float = 0.0  # pause-replica: how long the fault lasts; others are instantaneous

    @property
    def text(self) -> str:
        arg = (
            f"={self.count}"
            if self.count is not None
            else (f"={self.duration_s:g}s" if self.duration_s else "")
        )
        return f"{self.kind}{arg}@{self.at_s:g}s"

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        match = _SPEC.match(text.strip())
        if not match or match["kind"] not in KINDS:
            raise ValueError(
                f"--fault {text!r}: want KIND[=ARG]@OFFSET with KIND one of {', '.join(KINDS)} "
                "(e.g. kill-replica@30s, scale-replicas=1@30s, pause-replica=10s@30s)"
            )
        kind, arg = match["kind"], match["arg"]
        at_s = parse_duration(match["at"])
        wants = KINDS[kind]
        if (arg is None) != (wants is None):
            raise ValueError(
                f"--fault {text!r}: {kind} " + ("takes no =ARG" if wants is None else f"needs ={wants}")
            )
        if wants == "count":
            assert arg is not None
            if not arg.isdigit() or int(arg) < 1:
                raise ValueError(f"--fault {text!r}: the replica count must be a whole number >= 1")
            return cls(kind, at_s, count=int(arg))
        if wants == "duration":
            assert arg is not None
            duration = parse_duration(arg)
            if duration <= 0:
                raise ValueError(f"--fault {text!r}: the pause must last > 0 s")
            return cls(kind, at_s, duration_s=duration)
        return cls(kind, at_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        return cls(
            str(data["kind"]), float(data["at_s"]), data.get("count"), float(data.get("duration_s") or 0)
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

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppliedFault:
        fields = {k: data.get(k) for k in ("t", "t_end", "target", "error", "served_by_at_fault")}
        return cls(spec=FaultSpec.from_dict(data["spec"]), detail=str(data.get("detail") or ""), **fields)


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
    fault (unpause); `served_by()` reads the master's X-Served-By tally at the moment of the fault.
    """

    def __init__(
        self,
        specs: list[FaultSpec],
        path: Path,
        inject: Callable[[FaultSpec], tuple[str | None, str]],
        end: Callable[[FaultSpec, str | None], None],
        served_by: Callable[[], dict[str, Any] | None],
    ) -> None:
        self.specs = sorted(specs, key=lambda s: s.at_s)
        self.path = path
        self._inject, self._end, self._served_by = inject, end, served_by
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
        self._write()

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
            if spec.duration_s and record.error is None:
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
