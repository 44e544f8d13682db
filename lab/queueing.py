"""Latency at an arrival rate: each replica a FIFO queue fed at lambda / N (nginx's round-robin gives
every replica its own share), simulated with numpy.

One server per replica is the Lindley recursion W(n+1) = max(0, W(n) + S(n) - A(n+1)), solved for every
customer at once: with U the running sum of S(n) - A(n+1), W(n) = U(n) - min(0, min over k <= n of U(k)).
k servers per replica (several gunicorn workers) take the Kiefer-Wolfowitz recursion, one customer at a
time: each starts when the earliest server is free. Arrivals are Poisson (CV 1), evenly spaced (CV 0) or
gamma-distributed gaps with the measured CV; service times are drawn from the measured distribution,
times the contention factor the throughput fit found at N. The seed is recorded with the result.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lab.server_timing import ServerTiming

CUSTOMERS = 200_000  # enough for a p99 that moves < 2 % between seeds at 80 % utilisation
WARMUP_SHARE = 0.05  # the first customers find an empty queue: left out
SERVICE_PARTS = ("decode", "infer")  # the work one request costs a replica, from the Server-Timing split
Z95 = 1.6448536269514722  # the standard normal's 95th percentile


@dataclass(frozen=True)
class ServiceTime:
    """A replica's service time per request: lognormal through the measured mean and p95 (a positive,
    right-skewed time), exponential or deterministic (the closed forms' cases). Times in ms."""

    kind: str
    mean_ms: float
    p95_ms: float | None = None

    def sigma(self) -> float:
        # Lognormal: p95 / median = exp(1.645 sigma) and mean / median = exp(sigma^2 / 2), so
        # ln(p95 / mean) = 1.645 sigma - sigma^2 / 2; the smaller root (sigma < 1.645) is the one.
        if self.p95_ms is None or self.p95_ms <= self.mean_ms:
            return 0.0
        c = math.log(self.p95_ms / self.mean_ms)
        disc = Z95**2 - 2 * c
        return Z95 - math.sqrt(disc) if disc > 0 else Z95

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return SERVICE_KINDS[self.kind](self, rng, size)

    def scaled(self, factor: float) -> ServiceTime:
        return ServiceTime(self.kind, self.mean_ms * factor, self.p95_ms * factor if self.p95_ms else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceTime:
        return cls(str(data["kind"]), float(data["mean_ms"]), data.get("p95_ms"))


def _lognormal(s: ServiceTime, rng: np.random.Generator, size: int) -> np.ndarray:
    sigma = s.sigma()
    if sigma == 0.0:
        return np.full(size, s.mean_ms)
    return rng.lognormal(math.log(s.mean_ms) - sigma**2 / 2, sigma, size)


def _exponential(s: ServiceTime, rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.exponential(s.mean_ms, size)


def _deterministic(s: ServiceTime, rng: np.random.Generator, size: int) -> np.ndarray:
    return np.full(size, s.mean_ms)


SERVICE_KINDS: dict[str, Callable[[ServiceTime, np.random.Generator, int], np.ndarray]] = {
    "lognormal": _lognormal,
    "exponential": _exponential,
    "deterministic": _deterministic,
}


def service_from_timing(timing: ServerTiming, parts: tuple[str, ...] = SERVICE_PARTS) -> ServiceTime | None:
    """The service time from a light-load measurement's Server-Timing split: the parts' per-request means
    add up; their p95s are added too (as if a slow decode came with a slow inference: on the safe side)."""
    means = [timing.per_request_ms(p) for p in parts]
    if any(m is None for m in means) or not sum(m for m in means if m is not None):
        return None
    p95s = [s.p95_ms if (s := timing.stages.get(p)) is not None else None for p in parts]
    p95 = sum(p for p in p95s if p is not None) if all(p is not None for p in p95s) else None
    return ServiceTime("lognormal", float(sum(m for m in means if m is not None)), p95)


def interarrivals(rng: np.random.Generator, rate_per_ms: float, cv: float, size: int) -> np.ndarray:
    """Gaps between arrivals with mean 1 / rate and the given coefficient of variation."""
    mean = 1.0 / rate_per_ms
    if cv <= 0:
        return np.full(size, mean)
    if abs(cv - 1.0) < 1e-9:
        return rng.exponential(mean, size)
    shape = 1.0 / cv**2
    return rng.gamma(shape, mean / shape, size)


def waits_one_server(gaps: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Lindley's recursion for a FIFO single-server queue, vectorised (customer 0 finds it empty)."""
    steps = service[:-1] - gaps[1:]
    u = np.concatenate(([0.0], np.cumsum(steps)))
    return u - np.minimum.accumulate(np.minimum(u, 0.0))


def waits_k_servers(gaps: np.ndarray, service: np.ndarray, servers: int) -> np.ndarray:
    """FIFO with k servers: each customer starts when it arrives or when the earliest server frees."""
    free = [0.0] * servers
    arrivals = np.cumsum(gaps)
    waits = np.empty(arrivals.size)
    for i, (t, s) in enumerate(zip(arrivals.tolist(), service.tolist(), strict=True)):
        start = max(t, heapq.heappop(free))
        waits[i] = start - t
        heapq.heappush(free, start + s)
    return waits


@dataclass(frozen=True)
class QueueResult:
    """One replica's queue at its share of the traffic. Times in ms; None when the queue is unstable."""

    rate_per_s: float  # arrivals at this replica
    servers: int
    utilisation: float  # rate x mean service / servers
    stable: bool
    mean_wait_ms: float | None
    p50_ms: float | None  # response = wait + service (+ the fixed overhead outside the replica)
    p95_ms: float | None
    p99_ms: float | None
    customers: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def simulate(
    rate_per_s: float,
    service: ServiceTime,
    *,
    servers: int = 1,
    arrival_cv: float = 1.0,
    overhead_ms: float = 0.0,
    seed: int = 0,
    customers: int = CUSTOMERS,
) -> QueueResult:
    """Simulate one replica's queue; `overhead_ms` (nginx, network, the client) is added to every answer."""
    if rate_per_s <= 0 or servers < 1:
        raise ValueError("a queue needs a positive arrival rate and at least one server")
    rho = rate_per_s / 1000.0 * service.mean_ms / servers
    if rho >= 1.0:
        return QueueResult(rate_per_s, servers, rho, False, None, None, None, None, 0, seed)
    rng = np.random.default_rng(seed)
    gaps = interarrivals(rng, rate_per_s / 1000.0, arrival_cv, customers)
    times = service.sample(rng, customers)
    waits = waits_one_server(gaps, times) if servers == 1 else waits_k_servers(gaps, times, servers)
    keep = slice(int(customers * WARMUP_SHARE), None)
    response = waits[keep] + times[keep] + overhead_ms
    p50, p95, p99 = (float(v) for v in np.percentile(response, [50, 95, 99]))
    return QueueResult(
        rate_per_s, servers, rho, True, float(waits[keep].mean()), p50, p95, p99, customers, seed
    )
