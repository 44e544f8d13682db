"""The server-side split of a measurement: the master's GET /server-timing, saved as server_timing.json.

The workers aggregate each response's `Server-Timing` stages per request name and the master merges them
(the locustfile's concern); this module only reads the merged view. A stage appears only when some
response carried it (`fetch` only for URL requests). Missing file (an older master): no split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The stages in the order a request goes through them, `total` (the whole request) last: a copy of the
# classifier's canonical list (services/classifier/classifier/timing.py STAGES; the lab does not import the
# service), kept equal to it by tests/locust/test_stage_list.py.
STAGES = ("fetch", "queue", "decode", "infer", "total")
TOTAL = STAGES[-1]
PARTS = STAGES[:-1]  # the stages that make up `total`


@dataclass(frozen=True)
class StageStats:
    count: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class ServerTiming:
    stages: dict[str, StageStats]
    by_name: dict[str, dict[str, StageStats]]

    @property
    def total(self) -> StageStats | None:
        stage = self.stages.get(TOTAL)
        return stage if stage is not None and stage.count else None

    def mean_ms(self, stage: str) -> float | None:
        found = self.stages.get(stage)
        return found.mean_ms if found is not None and found.count else None

    def per_request_ms(self, stage: str) -> float | None:
        """The stage's mean spread over every request with a `total`: a stage only some requests have
        (`fetch`) adds its share, so the parts of a stacked bar add up to the mean total."""
        found, total = self.stages.get(stage), self.total
        if found is None or total is None or found.mean_ms is None or not found.count:
            return None
        return found.mean_ms * found.count / total.count


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_stage(data: Any) -> StageStats:
    """One histogram's summary (`stagestats`' shape: count, mean and percentiles in ms)."""
    if not isinstance(data, dict):
        raise ValueError(f"a stage must be an object, got {data!r}")
    count = data.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"a stage's count must be an integer >= 0, got {count!r}")
    return StageStats(
        count,
        _number(data.get("mean_ms")),
        _number(data.get("p50_ms")),
        _number(data.get("p95_ms")),
        _number(data.get("p99_ms")),
    )


def _stages(data: Any) -> dict[str, StageStats]:
    if not isinstance(data, dict):
        raise ValueError(f"stages must be an object, got {data!r}")
    return {str(name): parse_stage(stage) for name, stage in data.items()}


def parse_server_timing(data: Any) -> ServerTiming:
    if not isinstance(data, dict) or "stages" not in data:
        raise ValueError("not a /server-timing answer (no 'stages')")
    by_name = data.get("by_name") or {}
    if not isinstance(by_name, dict):
        raise ValueError("'by_name' must be an object")
    return ServerTiming(_stages(data["stages"]), {str(k): _stages(v) for k, v in by_name.items()})


def read_server_timing(path: Path) -> ServerTiming | None:
    if not path.is_file():
        return None
    try:
        return parse_server_timing(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError):
        return None
