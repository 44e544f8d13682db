"""The queue simulator against the closed forms: M/M/1 and M/D/1 mean wait, M/M/1's p95, M/M/2 (Erlang C)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.queueing import (
    ServiceTime,
    interarrivals,
    service_from_timing,
    simulate,
    waits_k_servers,
    waits_one_server,
)
from lab.server_timing import parse_server_timing

MEAN_MS = 10.0
MU = 1 / MEAN_MS  # per ms


@pytest.mark.parametrize("rho", [0.5, 0.7])
def test_mm1_mean_wait_and_p95_match_the_closed_form(rho: float) -> None:
    lam = rho * MU
    got = simulate(lam * 1000, ServiceTime("exponential", MEAN_MS), seed=1)
    assert got.stable and got.utilisation == pytest.approx(rho)
    assert got.mean_wait_ms == pytest.approx(rho / (MU - lam), rel=0.03)  # Wq = rho / (mu - lambda)
    # M/M/1's response time is exponential with rate mu - lambda: p95 = ln(20) / (mu - lambda).
    assert got.p95_ms == pytest.approx(math.log(20) / (MU - lam), rel=0.05)


@pytest.mark.parametrize("rho", [0.5, 0.7])
def test_md1_mean_wait_matches_the_closed_form(rho: float) -> None:
    got = simulate(rho * MU * 1000, ServiceTime("deterministic", MEAN_MS), seed=2)
    assert got.mean_wait_ms == pytest.approx(rho / (2 * MU * (1 - rho)), rel=0.03)  # Pollaczek-Khinchine


def test_mm2_mean_wait_matches_erlang_c() -> None:
    lam, k = 0.15, 2  # a = 1.5 erlangs over 2 servers: utilisation 0.75
    a = lam / MU
    top = a**k / math.factorial(k) / (1 - a / k)
    erlang_c = top / (sum(a**i / math.factorial(i) for i in range(k)) + top)
    got = simulate(lam * 1000, ServiceTime("exponential", MEAN_MS), servers=k, seed=3, customers=100_000)
    assert got.mean_wait_ms == pytest.approx(erlang_c / (k * MU - lam), rel=0.05)


def test_one_server_recursion_agrees_with_the_k_server_loop() -> None:
    rng = np.random.default_rng(4)
    gaps, service = rng.exponential(12.0, 2000), rng.exponential(10.0, 2000)
    assert np.allclose(waits_one_server(gaps, service), waits_k_servers(gaps, service, 1))


def test_overloaded_queue_is_unstable() -> None:
    got = simulate(120.0, ServiceTime("exponential", MEAN_MS))
    assert not got.stable and got.p95_ms is None and got.utilisation == pytest.approx(1.2)


def test_arrival_cv_and_the_seed() -> None:
    rng = np.random.default_rng(5)
    for cv in (0.0, 0.5, 1.0, 1.5):
        gaps = interarrivals(rng, 0.05, cv, 200_000)
        assert gaps.mean() == pytest.approx(20.0, rel=0.01)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, abs=0.02)
    a = simulate(60.0, ServiceTime("lognormal", MEAN_MS, 25.0), seed=9, customers=20_000)
    assert a == simulate(60.0, ServiceTime("lognormal", MEAN_MS, 25.0), seed=9, customers=20_000)


def test_lognormal_service_has_the_measured_mean_and_p95() -> None:
    s = ServiceTime("lognormal", 16.0, 30.0)
    draws = s.sample(np.random.default_rng(6), 400_000)
    assert draws.mean() == pytest.approx(16.0, rel=0.01)
    assert np.percentile(draws, 95) == pytest.approx(30.0, rel=0.02)


def test_service_time_from_the_server_timing_split() -> None:
    stage = {"count": 100, "mean_ms": 4.0, "p50_ms": 4.0, "p95_ms": 6.0, "p99_ms": 8.0}
    timing = parse_server_timing(
        {"stages": {"decode": stage, "infer": {**stage, "mean_ms": 12.0, "p95_ms": 20.0}, "total": stage}}
    )
    got = service_from_timing(timing)
    assert got == ServiceTime("lognormal", 16.0, 26.0)
    assert service_from_timing(parse_server_timing({"stages": {"total": stage}})) is None
