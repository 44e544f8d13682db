"""Intervals over runs, checked against scipy.stats on the same numbers and by simulated coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lab.intervals import SINGLE_RUN, MeanInterval, RatioInterval, mean_interval, ratio_interval, welch_df

RUNS_A = [78.8, 81.2, 76.5, 80.1]
RUNS_B = [119.2, 112.4, 121.9]


def test_mean_interval_is_scipys_one_sample_t_interval() -> None:
    got = mean_interval(RUNS_A)
    want = stats.ttest_1samp(RUNS_A, 0.0).confidence_interval(0.95)
    assert got.n == 4
    assert got.mean == pytest.approx(np.mean(RUNS_A))
    assert got.low == pytest.approx(want.low)
    assert got.high == pytest.approx(want.high)


def test_welch_df_is_scipys() -> None:
    va = np.var(RUNS_A, ddof=1) / len(RUNS_A)
    vb = np.var(RUNS_B, ddof=1) / len(RUNS_B)
    want = stats.ttest_ind(RUNS_A, RUNS_B, equal_var=False).df
    assert welch_df(va, len(RUNS_A), vb, len(RUNS_B)) == pytest.approx(want)


def test_ratio_interval_is_welchs_t_on_the_log_scale() -> None:
    got = ratio_interval(RUNS_B, RUNS_A)
    # The same interval by hand: log(mean) has variance s^2 / (n mean^2); Welch df of those variances.
    va = np.var(RUNS_B, ddof=1) / (len(RUNS_B) * np.mean(RUNS_B) ** 2)
    vb = np.var(RUNS_A, ddof=1) / (len(RUNS_A) * np.mean(RUNS_A) ** 2)
    df = (va + vb) ** 2 / (va**2 / (len(RUNS_B) - 1) + vb**2 / (len(RUNS_A) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    ratio = np.mean(RUNS_B) / np.mean(RUNS_A)
    assert got.ratio == pytest.approx(ratio)
    assert got.df == pytest.approx(df)
    assert got.low == pytest.approx(ratio * math.exp(-half))
    assert got.high == pytest.approx(ratio * math.exp(half))
    assert got.measurable
    assert got.text().startswith(f"{ratio:.2f}x (95% CI ")


def test_inverse_ratio_has_the_inverted_interval() -> None:
    ab, ba = ratio_interval(RUNS_A, RUNS_B), ratio_interval(RUNS_B, RUNS_A)
    assert ab.low == pytest.approx(1 / ba.high)
    assert ab.high == pytest.approx(1 / ba.low)


def test_ratio_containing_one_is_no_measurable_difference() -> None:
    got = ratio_interval([100.0, 90.0, 110.0], [102.0, 95.0, 108.0])
    assert got.has_interval and not got.measurable
    assert "no measurable difference with 3 runs" in got.text()


def test_single_run_has_no_interval() -> None:
    assert mean_interval([80.0]).text("req/s") == f"80.0 req/s ({SINGLE_RUN})"
    one = ratio_interval([120.0], [80.0])
    assert one.ratio == pytest.approx(1.5) and not one.has_interval and not one.measurable
    assert one.text() == f"1.50x ({SINGLE_RUN})"


def test_scale_gives_scaling_efficiency() -> None:
    got = ratio_interval(RUNS_B, RUNS_A, scale=1 / 2)
    plain = ratio_interval(RUNS_B, RUNS_A)
    assert got.ratio == pytest.approx(plain.ratio / 2)
    assert got.low == pytest.approx(plain.low / 2)


def test_records_round_trip() -> None:
    m = mean_interval(RUNS_A)
    r = ratio_interval(RUNS_B, RUNS_A)
    assert MeanInterval.from_dict(m.to_dict()) == m
    assert RatioInterval.from_dict(r.to_dict()) == r


@pytest.mark.parametrize("n_a,n_b,cv_a,cv_b", [(3, 3, 0.10, 0.10), (5, 3, 0.05, 0.15), (4, 4, 0.20, 0.08)])
def test_ratio_interval_covers_the_true_ratio_about_95_percent(n_a: int, n_b: int, cv_a: float, cv_b: float):
    """1,000 simulated experiments with a known spread: the interval holds the true ratio ~95 % of
    the time (a binomial 1,000 at 0.95 has sd 0.7 %; the delta method is an approximation, so ±2.5 %)."""
    rng = np.random.default_rng(20261203)
    true_a, true_b = 120.0, 80.0
    hits = 0
    for _ in range(1000):
        a = rng.normal(true_a, cv_a * true_a, n_a)
        b = rng.normal(true_b, cv_b * true_b, n_b)
        r = ratio_interval(a, b)
        hits += r.low <= true_a / true_b <= r.high
    assert 0.925 <= hits / 1000 <= 0.975


def test_mean_interval_covers_the_true_mean_95_percent() -> None:
    rng = np.random.default_rng(7)
    hits = sum((m := mean_interval(rng.normal(100.0, 15.0, 4))).low <= 100.0 <= m.high for _ in range(1000))
    assert 0.935 <= hits / 1000 <= 0.965


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        mean_interval([])
    with pytest.raises(ValueError):
        ratio_interval([1.0, 2.0], [0.0, 0.0])


def test_floor_cuts_an_interval_where_the_quantity_cannot_go() -> None:
    wide = mean_interval([22.4, 45.3])
    assert wide.low < 0
    cut = mean_interval([22.4, 45.3], floor=0.0)
    assert cut.low == 0.0 and cut.high == pytest.approx(wide.high) and cut.mean == wide.mean
