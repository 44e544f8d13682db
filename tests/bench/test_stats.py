from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bench.stats import core_busy_percent, cpu_share, percentile, summarize_ms


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 99.9, 100])
def test_percentile_matches_numpy_linear_interpolation(q: float) -> None:
    values = [random.Random(7).expovariate(1 / 20) for _ in range(997)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_small_cases() -> None:
    assert percentile([5.0], 99) == 5.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5  # unsorted input, between the two middle ranks
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_ms_converts_seconds_and_orders() -> None:
    summary = summarize_ms([0.003, 0.001, 0.002, 0.010])
    assert summary["count"] == 4
    assert summary["p50"] == pytest.approx(2.5)
    assert summary["max"] == pytest.approx(10.0)
    assert summary["mean"] == pytest.approx(4.0)
    assert summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]
    empty = summarize_ms([])
    assert empty["count"] == 0 and math.isnan(empty["p95"])


def test_cpu_and_core_shares() -> None:
    assert cpu_share(0.5, 2.0) == pytest.approx(25.0)
    assert math.isnan(cpu_share(1.0, 0.0))
    # user nice system idle iowait irq softirq steal: 60 busy (incl. 10 steal), 40 idle + iowait
    before = [100, 0, 50, 1000, 10, 0, 0, 0]
    after = [140, 0, 60, 1030, 20, 0, 0, 10]
    assert core_busy_percent(before, after) == pytest.approx(60.0)
    assert math.isnan(core_busy_percent(before, before))
