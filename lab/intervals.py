"""How sure a number over repeated runs is: the run is the unit of replication, not the request.

A mean over runs gets a Student-t interval (the runs' spread, n - 1 degrees of freedom). A ratio of two
configurations' means gets its interval on the log scale by the delta method,
Var(log mean) ~ s^2 / (n mean^2), with Welch's degrees of freedom, so a ratio and its inverse have the same
interval, inverted. One run has no spread to go by: it gets no interval, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RATIO_METHOD = "log-scale delta method, Welch df"
SINGLE_RUN = "single run: no interval"


@dataclass(frozen=True)
class MeanInterval:
    """The mean of one quantity over n runs, with its confidence interval (None for n = 1)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self, unit: str = "", digits: int = 1) -> str:
        suffix = f" {unit}" if unit else ""
        head = f"{self.mean:.{digits}f}{suffix}"
        if not self.has_interval:
            return f"{head} ({SINGLE_RUN})"
        band = f"{self.confidence:.0%} CI {self.low:.{digits}f} to {self.high:.{digits}f}"
        return f"{head} ({band}, {self.n} runs)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeanInterval:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


def mean_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, floor: float | None = None
) -> MeanInterval:
    """Student-t interval of the mean of `values`, one value per run; `floor` cuts the interval where the
    quantity cannot go (a throughput or a latency is not negative: with 2 noisy runs t reaches below 0)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no runs to average")
    mean = float(x.mean())
    if x.size == 1:
        return MeanInterval(1, mean, None, None, None, confidence)
    sd = float(x.std(ddof=1))
    if sd == 0.0:
        return MeanInterval(int(x.size), mean, 0.0, mean, mean, confidence)
    low, high = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=sd / math.sqrt(x.size))
    if floor is not None:
        low = max(float(low), floor)
    return MeanInterval(int(x.size), mean, sd, float(low), float(high), confidence)


@dataclass(frozen=True)
class RatioInterval:
    """mean(a) / mean(b) over runs, with its interval (None when either side has a single run)."""

    ratio: float
    low: float | None
    high: float | None
    n_a: int
    n_b: int
    df: float | None  # Welch's degrees of freedom on the log scale
    confidence: float = CONFIDENCE
    method: str = RATIO_METHOD

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def measurable(self) -> bool:
        """The interval excludes 1: the two configurations differ by more than the runs' noise."""
        return self.has_interval and not (self.low <= 1.0 <= self.high)  # type: ignore[operator]

    @property
    def runs(self) -> str:
        return f"{self.n_a} runs" if self.n_a == self.n_b else f"{self.n_a} and {self.n_b} runs"

    def text(self, digits: int = 2) -> str:
        head = f"{self.ratio:.{digits}f}x"
        if not self.has_interval:
            return f"{head} ({SINGLE_RUN})"
        band = f"{self.confidence:.0%} CI {self.low:.{digits}f} to {self.high:.{digits}f}"
        if not self.measurable:
            return f"{head} ({band}): no measurable difference with {self.runs}"
        return f"{head} ({band}, {self.runs})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RatioInterval:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom for two means with variances of the mean var_a, var_b."""
    den = var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1)
    return (var_a + var_b) ** 2 / den if den > 0 else math.inf


def ratio_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE, scale: float = 1.0
) -> RatioInterval:
    """Interval of scale x mean(a) / mean(b), the runs of a and b independent (different runs).

    `scale` turns the ratio into a derived one with the same relative error, e.g. scaling efficiency
    rps_N / (N / N0 x rps_N0) is ratio_interval(rps_N, rps_N0, scale=N0 / N)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size == 0 or xb.size == 0:
        raise ValueError("no runs to compare")
    ma, mb = float(xa.mean()), float(xb.mean())
    if ma <= 0 or mb <= 0:
        raise ValueError("a ratio's interval needs positive means")
    ratio = scale * ma / mb
    if xa.size < 2 or xb.size < 2:
        return RatioInterval(ratio, None, None, int(xa.size), int(xb.size), None, confidence)
    # The variance of log(mean) by the delta method: Var(mean) / mean^2.
    va = float(xa.var(ddof=1)) / (xa.size * ma**2)
    vb = float(xb.var(ddof=1)) / (xb.size * mb**2)
    if va + vb == 0.0:
        return RatioInterval(ratio, ratio, ratio, int(xa.size), int(xb.size), None, confidence)
    df = welch_df(va, int(xa.size), vb, int(xb.size))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(va + vb)
    return RatioInterval(
        ratio, ratio * math.exp(-half), ratio * math.exp(half), int(xa.size), int(xb.size), df, confidence
    )
