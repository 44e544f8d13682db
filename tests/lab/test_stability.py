"""perf_analyzer's stability rule on synthetic series: settled, drifting, oscillating."""

from __future__ import annotations

import pytest

from lab.stability import Stability, StabilityRule, WindowPoint, is_stable, judge, stable_after, window_points
from lab.timeline import Second

RULE = StabilityRule(window_s=5, tolerance=0.10)


def points(rps: list[float], p95: list[float | None]) -> list[WindowPoint]:
    return [WindowPoint(r, p) for r, p in zip(rps, p95, strict=True)]


def test_settled_series_is_stable_once_three_windows_agree() -> None:
    # A warm-up transient, then throughput and p95 within a few % of each other.
    series = points([40, 70, 96, 100, 103, 99, 101], [300, 180, 121, 118, 124, 120, 119])
    assert stable_after(series, RULE) == 5  # windows 3-5: 96/100/103 and 121/118/124
    result = judge(series, RULE)
    assert result.stable and result.settled_after_s == 25.0
    assert "stable after 25 s" in result.text()


def test_drifting_series_is_never_stable() -> None:
    # Throughput flat, p95 growing 12 % a window (a queue that builds up): 3 windows always span > 10 %.
    p95 = [100 * 1.12**k for k in range(10)]
    series = points([100.0] * 10, p95)
    assert stable_after(series, RULE) is None
    assert not judge(series, RULE).stable
    assert "not stable" in judge(series, RULE).text()
    # The rule's known blind spot: a slow drift (8 % a window) keeps 3 windows within 10 % of their mean.
    assert stable_after(points([100.0] * 10, [100 * 1.08**k for k in range(10)]), RULE) == 3


def test_oscillating_series_is_never_stable() -> None:
    # Throughput alternating ±15 % around 100 (e.g. a replica pausing for GC): never within 10 %.
    series = points([115, 85] * 5, [120.0] * 10)
    assert stable_after(series, RULE) is None
    # The same oscillation within a looser rule passes.
    assert stable_after(series, StabilityRule(5, 0.20)) == 3


def test_one_quantity_within_is_not_enough() -> None:
    steady_rps_jumpy_p95 = points([100, 101, 99], [100, 140, 100])
    assert not is_stable(steady_rps_jumpy_p95, RULE)
    assert not is_stable(points([100, 100], [100, 100]), RULE)  # fewer windows than the rule compares
    assert not is_stable(points([100, 100, 100], [100, None, 100]), RULE)  # a window with no answer


def test_windows_from_the_per_second_timeline() -> None:
    t0 = 1_795_600_000
    seconds = [Second(t0 + s, 10, 0, {50.0: 9, 200.0: 1}) for s in range(12)]
    got = window_points(seconds, t0 + 0.2, t0 + 11.9, 5)
    # Whole seconds t0+1 .. t0+10 make two whole windows; second 11 waits for the next one.
    assert len(got) == 2
    assert got[0] == WindowPoint(10.0, 200.0)


def test_bad_rule_is_refused_and_result_round_trips() -> None:
    with pytest.raises(ValueError):
        StabilityRule(0, 0.1)
    with pytest.raises(ValueError):
        StabilityRule(5, 1.5)
    result = judge(points([100, 100, 100], [50, 50, 50]), RULE)
    assert Stability.from_dict(result.to_dict()) == result
