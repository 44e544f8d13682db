"""Throughput against replicas: Gunther's Universal Scalability Law, fitted to measured runs.

    X(N) = gamma N / (1 + alpha (N - 1) + beta N (N - 1))

gamma is one replica's throughput, alpha the contention (the share of one replica's work each added
replica costs, waiting for something shared), beta the coherency (a cost per pair of replicas, which makes
throughput peak at N* = sqrt((1 - alpha) / beta) and fall after). The fit is bounded least squares
(alpha, beta >= 0; scipy.optimize.least_squares), as the R `usl` package does, on each run's error
relative to its replica count's mean.
With two replica counts, or when beta cannot be told from noise, beta is set to 0 (Amdahl's law) and the
fit says so. Its uncertainty is a bootstrap over runs with a recorded seed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

USL = "usl"
AMDAHL = "amdahl"
BOOTSTRAP_RESAMPLES = 400
BAND_CONFIDENCE = 0.95


def throughput(n: np.ndarray | float, gamma: float, alpha: float, beta: float) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    return gamma * n / (1.0 + alpha * (n - 1.0) + beta * n * (n - 1.0))


@dataclass(frozen=True)
class UslFit:
    model: str  # usl, or amdahl (beta fixed at 0)
    gamma: float
    alpha: float
    beta: float
    counts: list[int]  # the replica counts the fit rests on
    runs: int  # points fitted (one per run)
    why_amdahl: str | None = None  # why beta was set to 0
    beta_se: float | None = None  # the USL fit's standard error of beta (None: Amdahl from the start)

    def at(self, n: np.ndarray | float) -> np.ndarray:
        return throughput(n, self.gamma, self.alpha, self.beta)

    def contention_factor(self, n: float) -> float:
        """How much slower each replica works at N than alone: gamma N / X(N)."""
        return 1.0 + self.alpha * (n - 1.0) + self.beta * n * (n - 1.0)

    @property
    def peak_n(self) -> float | None:
        """Where X(N) peaks (beta > 0 and alpha < 1); None: it keeps rising toward gamma / alpha."""
        if self.beta <= 0 or self.alpha >= 1:
            return None
        return math.sqrt((1.0 - self.alpha) / self.beta)

    def words(self) -> list[str]:
        """The parameters in plain words."""
        lines = [f"one replica alone: gamma = {self.gamma:.1f} req/s"]
        lines.append(
            f"contention alpha = {self.alpha:.3g}: each added replica costs {self.alpha:.1%} of one "
            "replica's work (waiting for something the replicas share: cores, nginx, the generator)"
        )
        if self.model == AMDAHL:
            lines.append(f"coherency beta set to 0 (Amdahl's law): {self.why_amdahl}")
            if self.alpha > 0:
                limit = self.gamma / self.alpha
                lines.append(f"throughput approaches, never passes, gamma / alpha = {limit:.0f} req/s")
        else:
            lines.append(
                f"coherency beta = {self.beta:.3g}: each pair of replicas costs {self.beta:.2%} of a "
                "replica's work in crosstalk"
            )
            peak = self.peak_n
            if peak is not None:
                lines.append(
                    f"throughput peaks at N* = {peak:.1f} replicas ({float(self.at(peak)):.1f} req/s) "
                    "and falls beyond"
                )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_n": self.peak_n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UslFit:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _least_squares(
    n: np.ndarray, x: np.ndarray, with_beta: bool, start: Sequence[float] | None = None
) -> optimize.OptimizeResult:
    gamma0 = float(np.mean(x[n == n.min()]) / n.min())
    # Each run's error relative to the mean of its replica count: run-to-run noise grows with X, so each
    # count weighs alike, and at a count the fit goes through the runs' arithmetic mean (relative to each
    # run itself would pull it toward the slowest run: with runs of 22 and 45 req/s, to 27).
    scale = np.empty_like(x)
    for count in np.unique(n):
        scale[n == count] = x[n == count].mean()

    def residuals(p: np.ndarray) -> np.ndarray:
        beta = p[2] if with_beta else 0.0
        return (throughput(n, p[0], p[1], beta) - x) / scale

    def jacobian(p: np.ndarray) -> np.ndarray:
        beta = p[2] if with_beta else 0.0
        d = 1.0 + p[1] * (n - 1.0) + beta * n * (n - 1.0)
        columns = [n / d, -p[0] * n * (n - 1.0) / d**2]
        if with_beta:
            columns.append(-p[0] * n * n * (n - 1.0) / d**2)
        return np.column_stack(columns) / scale[:, None]

    x0 = list(start) if start is not None else ([gamma0, 0.02, 1e-4] if with_beta else [gamma0, 0.02])
    lower = [1e-9, 0.0, 0.0] if with_beta else [1e-9, 0.0]
    x0 = [max(v, lo) for v, lo in zip(x0, lower, strict=True)]
    return optimize.least_squares(residuals, x0, jac=jacobian, bounds=(lower, np.inf), x_scale="jac")


def _beta_se(result: optimize.OptimizeResult, points: int) -> float | None:
    dof = points - 3
    if dof < 1:
        return None
    jtj = result.jac.T @ result.jac
    try:
        cov = np.linalg.inv(jtj) * float(2 * result.cost) / dof
    except np.linalg.LinAlgError:
        return None
    var = float(cov[2, 2])
    return math.sqrt(var) if var >= 0 else None


def _as_arrays(counts: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    n, x = np.asarray(counts, dtype=float), np.asarray(values, dtype=float)
    if n.shape != x.shape or n.size == 0:
        raise ValueError("one throughput per run, with its replica count")
    if np.any(n < 1) or np.any(x <= 0):
        raise ValueError("replica counts must be >= 1 and throughputs > 0")
    return n, x


def fit(
    counts: Sequence[float], values: Sequence[float], model: str | None = None, start: UslFit | None = None
) -> UslFit:
    """Fit one throughput per run (`values`) at its replica count; `model` forces usl or amdahl, and
    `start` begins the search from an earlier fit (the bootstrap's refits start from the central one)."""
    n, x = _as_arrays(counts, values)
    distinct = sorted({int(v) for v in n})
    if len(distinct) < 2:
        raise ValueError("a scalability fit needs at least 2 replica counts")
    why: str | None = None
    beta_se: float | None = None
    if model == AMDAHL:
        why = "as the fit it is resampled from"
    elif len(distinct) == 2:
        why = "2 replica counts cannot tell coherency (beta) from contention (alpha)"
    else:
        begin = [start.gamma, start.alpha, max(start.beta, 1e-6)] if start is not None else None
        full = _least_squares(n, x, with_beta=True, start=begin)
        gamma, alpha, beta = (float(v) for v in full.x)
        beta_se = _beta_se(full, int(n.size))
        if model == USL:
            return UslFit(USL, gamma, alpha, beta, distinct, int(n.size), None, beta_se)
        if beta_se is None:
            why = f"{n.size} runs leave no residual to judge beta by"
        elif beta <= beta_se:
            why = f"beta = {beta:.2g} ± {beta_se:.2g} is not distinguishable from 0 with these runs"
        else:
            return UslFit(USL, gamma, alpha, beta, distinct, int(n.size), None, beta_se)
    amdahl = _least_squares(n, x, with_beta=False, start=[start.gamma, start.alpha] if start else None)
    gamma, alpha = (float(v) for v in amdahl.x)
    return UslFit(AMDAHL, gamma, alpha, 0.0, distinct, int(n.size), why, beta_se)


@dataclass(frozen=True)
class Band:
    """X(N) with a bootstrap band over runs, on a grid of replica counts."""

    n: list[int]
    mid: list[float]  # the fit on every run
    low: list[float]
    high: list[float]
    seed: int
    resamples: int
    method: str  # what was resampled
    confidence: float = BAND_CONFIDENCE
    fitted_range: list[int] = field(default_factory=list)  # [smallest, largest] measured count

    def at(self, n: int) -> tuple[float, float, float]:
        i = self.n.index(n)
        return self.low[i], self.mid[i], self.high[i]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Band:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def band(
    counts: Sequence[float],
    values: Sequence[float],
    grid: Sequence[int],
    central: UslFit,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = BAND_CONFIDENCE,
) -> Band:
    """Refit the central fit's model to resampled runs: the runs of each replica count drawn with
    replacement (the run is the unit), or, with a single run per count, the fit's relative residuals
    drawn onto its values. The band is the middle `confidence` of the refits' X(N) at each N."""
    n, x = _as_arrays(counts, values)
    rng = np.random.default_rng(seed)
    by_count: dict[float, np.ndarray] = defaultdict(lambda: np.empty(0))
    for count in np.unique(n):
        by_count[float(count)] = x[n == count]
    repeated = any(v.size > 1 for v in by_count.values())
    fitted = central.at(n)
    residuals = x / fitted - 1.0
    if repeated:
        method = "runs of each replica count resampled with replacement"
    elif np.allclose(residuals, 0.0):
        method = "none: one run per count and an exact fit, no spread to resample"
    else:
        method = "one run per count: the fit's relative residuals resampled"
    g = np.asarray(grid, dtype=float)
    curves = []
    for _ in range(resamples if not method.startswith("none") else 0):
        if repeated:
            rn = np.concatenate([np.full(v.size, c) for c, v in by_count.items()])
            rx = np.concatenate([rng.choice(v, size=v.size, replace=True) for v in by_count.values()])
        else:
            rn, rx = n, fitted * (1.0 + rng.choice(residuals, size=residuals.size, replace=True))
        if np.any(rx <= 0):
            continue
        refit = fit(rn, rx, model=central.model, start=central)
        curves.append(refit.at(g))
    mid = central.at(g)
    if curves:
        stack = np.vstack(curves)
        tail = (1.0 - confidence) / 2 * 100
        low, high = np.percentile(stack, [tail, 100 - tail], axis=0)
    else:
        low, high = mid, mid
    return Band(
        [int(v) for v in g],
        [float(v) for v in mid],
        [float(v) for v in np.minimum(low, mid)],
        [float(v) for v in np.maximum(high, mid)],
        seed,
        len(curves),
        method,
        confidence,
        [min(central.counts), max(central.counts)],
    )
