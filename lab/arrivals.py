"""The open model's arrivals in one measurement: the master's GET /arrivals, saved as arrivals.json.

The locustfile draws the arrivals and counts them (locust/README.md): *late* when no user was free at an
arrival's time (sent as soon as one was), *dropped* when that was more than users / rate seconds later
(never sent); it also keeps the swarm's send times, hence the achieved rate and the inter-arrival CV
(Poisson 1, evenly spaced 0), and counts *lagging* sends, started more than 10 ms after their time with a
user free: the generator's own process was short of CPU. In the open model it also has the latency from
each arrival's intended time to its answer (`from_intended_start`: what a client arriving at that time
waited, with the wait for a free user that Locust's own response time leaves out; a dropped arrival counts
at its lateness when dropped, a lower bound). This module only reads that summary. Missing or malformed
file (an older master): None; no `from_intended_start` (closed model, or an older master): None there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.server_timing import StageStats, parse_stage

PROCESSES = ("poisson", "even")  # the locustfile's --arrivals


@dataclass(frozen=True)
class Arrivals:
    process: str | None  # poisson or even; None for a closed model
    intended: int  # sent + dropped
    sent: int
    late: int
    dropped: int
    lagging: int
    achieved_rps: float | None
    interarrival_cv: float | None
    max_per_100ms: int | None
    max_send_lag_ms: float | None
    from_intended: StageStats | None = None  # ms from each arrival's intended time to its answer

    @property
    def late_share(self) -> float:
        """Arrivals that were not sent on time (late or dropped), as a share of all of them."""
        return (self.late + self.dropped) / self.intended if self.intended else 0.0


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key!r} must be an integer >= 0, got {value!r}")
    return value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_arrivals(data: Any) -> Arrivals:
    if not isinstance(data, dict) or "intended" not in data:
        raise ValueError("not a /arrivals answer (no 'intended')")
    process = data.get("arrivals")
    peak = data.get("max_per_100ms")
    from_intended = data.get("from_intended_start")
    return Arrivals(
        process=process if process in PROCESSES else None,
        intended=_count(data, "intended"),
        sent=_count(data, "sent"),
        late=_count(data, "late"),
        dropped=_count(data, "dropped"),
        lagging=_count(data, "lagging_sends"),
        achieved_rps=_number(data.get("achieved_rps")),
        interarrival_cv=_number(data.get("interarrival_cv")),
        max_per_100ms=peak if isinstance(peak, int) and not isinstance(peak, bool) else None,
        max_send_lag_ms=_number(data.get("max_send_lag_ms")),
        from_intended=parse_stage(from_intended) if isinstance(from_intended, dict) else None,
    )


def read_arrivals(path: Path) -> Arrivals | None:
    if not path.is_file():
        return None
    try:
        return parse_arrivals(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError):
        return None
