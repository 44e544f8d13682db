"""The USL fit on synthetic sweeps with known parameters, its Amdahl fallback and its bootstrap band."""

from __future__ import annotations

import numpy as np
import pytest

from lab.usl import AMDAHL, USL, UslFit, band, fit, throughput

COUNTS = [1, 2, 4, 8, 16, 32]
GAMMA, ALPHA, BETA = 100.0, 0.1, 0.01  # peak at N* = sqrt(0.9 / 0.01) = 9.5


def test_recovers_known_parameters_from_six_noisy_points() -> None:
    """50 sweeps of 6 points with 1 % run-to-run noise: gamma always within 10 %, alpha and beta within
    10 % in at least 90 % of them (with 6 points alpha and beta trade off; the R usl authors warn so)."""
    rng = np.random.default_rng(20)
    errors = []
    for _ in range(50):
        x = throughput(np.array(COUNTS), GAMMA, ALPHA, BETA) * (1 + rng.normal(0, 0.01, len(COUNTS)))
        got = fit(COUNTS, x)
        assert got.model == USL
        errors.append([got.gamma / GAMMA - 1, got.alpha / ALPHA - 1, got.beta / BETA - 1])
    within = np.abs(np.array(errors)) <= 0.10
    assert within[:, 0].all()
    assert within[:, 1].mean() >= 0.9
    assert within[:, 2].mean() >= 0.9


def test_exact_data_gives_exact_parameters_and_peak() -> None:
    got = fit(COUNTS, throughput(np.array(COUNTS), GAMMA, ALPHA, BETA))
    assert (got.gamma, got.alpha, got.beta) == pytest.approx((GAMMA, ALPHA, BETA), rel=1e-4)
    assert got.peak_n == pytest.approx(np.sqrt(0.9 / 0.01), rel=1e-3)
    words = " ".join(got.words())
    assert "each added replica costs 10.0% of one replica's work" in words
    assert "peaks at N* = 9.5" in words


def test_two_replica_counts_fall_back_to_amdahl() -> None:
    # 1 replica 80 req/s, 2 replicas 140: Amdahl 2 x 80 / (1 + alpha) = 140 gives alpha = 1/7.
    got = fit([1, 1, 2, 2], [79.0, 81.0, 139.0, 141.0])
    assert got.model == AMDAHL and got.beta == 0.0
    assert got.gamma == pytest.approx(80.0, rel=1e-2)
    assert got.alpha == pytest.approx(1 / 7, rel=1e-2)
    assert "2 replica counts" in (got.why_amdahl or "")
    assert got.peak_n is None
    assert "beta set to 0" in " ".join(got.words())


def test_beta_not_identifiable_falls_back_to_amdahl_and_says_why() -> None:
    # Amdahl data (beta = 0) with noise over 3 counts: beta is not told from 0.
    rng = np.random.default_rng(3)
    n = np.array([1, 2, 3] * 3)
    x = throughput(n, 80.0, 0.2, 0.0) * (1 + rng.normal(0, 0.03, n.size))
    got = fit(n, x)
    assert got.model == AMDAHL
    assert "beta" in (got.why_amdahl or "")


def test_band_widens_outside_the_fitted_range() -> None:
    rng = np.random.default_rng(5)
    n = np.array([1, 2, 3, 4, 6] * 3)
    x = throughput(n, 100.0, 0.05, 0.01) * (1 + rng.normal(0, 0.05, n.size))
    central = fit(n, x)
    got = band(n, x, list(range(1, 25)), central, seed=11, resamples=200)
    width = {k: (got.at(k)[2] - got.at(k)[0]) / got.at(k)[1] for k in (3, 6, 12, 24)}
    assert width[6] < width[12] < width[24]
    assert width[24] > 2 * width[6]
    assert got.fitted_range == [1, 6]
    assert "resampled with replacement" in got.method
    # The seed reproduces the band.
    assert band(n, x, list(range(1, 25)), central, seed=11, resamples=200) == got


def test_amdahl_band_from_repeats_on_two_counts() -> None:
    n, x = [1, 1, 1, 2, 2, 2], [78.0, 80.0, 82.0, 136.0, 140.0, 144.0]
    central = fit(n, x)
    got = band(n, x, [1, 2, 4, 8], central, seed=1, resamples=200)
    lo, mid, hi = got.at(8)
    assert lo < mid < hi
    assert got.resamples == 200


def test_bad_input_is_refused_and_fit_round_trips() -> None:
    with pytest.raises(ValueError, match="2 replica counts"):
        fit([2, 2], [100.0, 101.0])
    with pytest.raises(ValueError):
        fit([1, 2], [100.0, 0.0])
    got = fit([1, 2], [80.0, 140.0])
    assert UslFit.from_dict(got.to_dict()) == got


def test_amdahl_on_two_counts_goes_through_the_runs_means() -> None:
    # Two very noisy runs per count (a busy machine): the fit passes through each count's arithmetic mean,
    # not toward the slower run.
    got = fit([1, 1, 2, 2], [22.4, 45.3, 39.6, 77.2])
    assert float(got.at(1)) == pytest.approx(33.85, rel=1e-3)
    assert float(got.at(2)) == pytest.approx(58.4, rel=1e-3)
