from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bench.stats import cpu_share, summarize_ms


def test_summarize_ms_converts_seconds_and_orders() -> None:
    summary = summarize_ms([0.003, 0.001, 0.002, 0.010])
    assert summary["count"] == 4
    assert summary["p50"] == pytest.approx(2.5)  # unsorted input, between the two middle ranks
    assert summary["max"] == pytest.approx(10.0)
    assert summary["mean"] == pytest.approx(4.0)
    assert summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]
    empty = summarize_ms([])
    assert empty["count"] == 0 and math.isnan(empty["p95"])


def test_summarize_ms_percentiles_are_numpys_linear_interpolation() -> None:
    seconds = [random.Random(7).expovariate(1 / 0.02) for _ in range(997)]
    summary = summarize_ms(iter(seconds))  # any iterable, as the load generator passes
    ms = [s * 1000 for s in seconds]
    for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert summary[key] == pytest.approx(float(np.percentile(ms, q)), rel=1e-12)
    assert summarize_ms([0.005])["p99"] == pytest.approx(5.0)


def test_cpu_share() -> None:
    assert cpu_share(0.5, 2.0) == pytest.approx(25.0)
    assert math.isnan(cpu_share(1.0, 0.0))
