"""When a measurement has settled (Triton perf_analyzer's rule, its `-s`): the load is measured in windows
of `window_s` seconds, and it is stable once the last `windows` windows' throughput and p95 each lie
within `tolerance` of their mean. The driver applies it while measuring (--until-stable); the report
reads the verdict back from measurement.json."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.timeline import Second, window

DEFAULT_WINDOW_S = 5
DEFAULT_STABILITY_PCT = 10.0
WINDOWS_COMPARED = 3


@dataclass(frozen=True)
class StabilityRule:
    window_s: int = DEFAULT_WINDOW_S
    tolerance: float = DEFAULT_STABILITY_PCT / 100  # a fraction of the windows' mean
    windows: int = WINDOWS_COMPARED

    def describe(self) -> str:
        return (
            f"the last {self.windows} windows of {self.window_s} s within {self.tolerance:.0%} of their mean "
            "in throughput and p95"
        )

    def __post_init__(self) -> None:
        if self.window_s < 1:
            raise ValueError("--window must be >= 1 s")
        if not 0 < self.tolerance < 1:
            raise ValueError("--stability must be between 0 and 100 %")
        if self.windows < 2:
            raise ValueError("the stability rule compares at least 2 windows")


@dataclass(frozen=True)
class WindowPoint:
    """One window's throughput and p95 (None: no request answered in it)."""

    rps: float
    p95_ms: float | None


def _within(values: Sequence[float], tolerance: float) -> bool:
    mean = sum(values) / len(values)
    if mean <= 0:
        return False
    return all(abs(v - mean) <= tolerance * mean for v in values)


def is_stable(last: Sequence[WindowPoint], rule: StabilityRule) -> bool:
    """Whether the last `rule.windows` windows agree within the tolerance, throughput and p95 each."""
    if len(last) < rule.windows:
        return False
    tail = last[-rule.windows :]
    p95s = [w.p95_ms for w in tail]
    if any(p is None for p in p95s):
        return False
    return _within([w.rps for w in tail], rule.tolerance) and _within(
        [p for p in p95s if p is not None], rule.tolerance
    )


def stable_after(points: Sequence[WindowPoint], rule: StabilityRule) -> int | None:
    """The number of windows after which the series was first stable, or None if it never was."""
    for k in range(rule.windows, len(points) + 1):
        if is_stable(points[:k], rule):
            return k
    return None


def window_points(seconds: list[Second], t_start: float, t_now: float, window_s: int) -> list[WindowPoint]:
    """The whole windows of `window_s` seconds between t_start and t_now, from the per-second timeline."""
    by_t = {s.t: s for s in seconds}
    first = math.ceil(t_start)
    count = max(0, (math.floor(t_now) - first) // window_s)
    out: list[WindowPoint] = []
    for k in range(count):
        w = window(by_t, first + k * window_s, window_s)
        out.append(WindowPoint(w.rps, w.p95_ms))
    return out


@dataclass(frozen=True)
class Stability:
    """What --until-stable found in one measurement (saved in measurement.json as "stability")."""

    rule: StabilityRule
    stable: bool
    settled_after_s: float | None  # seconds from the measurement's start to the end of the deciding window
    windows: list[WindowPoint] = field(default_factory=list)

    def text(self) -> str:
        if self.stable:
            return f"stable after {self.settled_after_s:g} s ({self.rule.describe()})"
        return f"not stable by the end of the measurement (never {self.rule.describe()})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stability:
        return cls(
            StabilityRule(**data["rule"]),
            bool(data["stable"]),
            data.get("settled_after_s"),
            [WindowPoint(**w) for w in data.get("windows") or []],
        )


def judge(points: list[WindowPoint], rule: StabilityRule) -> Stability:
    k = stable_after(points, rule)
    return Stability(rule, k is not None, float(k * rule.window_s) if k is not None else None, points)
