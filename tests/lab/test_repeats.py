"""Repeats in the summary: per-configuration intervals, ratios with intervals in the verdict, the
recommendation from the interval's low end, and unstable measurements marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.grid import ExperimentSettings
from lab.intervals import SINGLE_RUN, mean_interval, ratio_interval
from lab.stability import StabilityRule, WindowPoint, judge
from lab.summary import build_summary
from tests.lab.golden import Config, Measurement, row_with, write_run

R1 = [78.0, 82.0, 80.0]
R2 = [150.0, 158.0, 146.0]


def _config(replicas: int, rps: float, repeat: int, backend: str | None = None, **extra) -> Config:
    rows = [row_with("/predict", int(rps * 20), rps, 40.0, 90.0 + replicas, 120.0)]
    return Config(replicas, [Measurement(users=8, traffic=rows, **extra)], backend=backend, repeat=repeat)


def _run(tmp_path: Path, configs: list[Config], repeat: int, **settings) -> Path:
    return write_run(
        tmp_path / "run", ExperimentSettings(replicas=[1, 2], users=[8], repeat=repeat, **settings), configs
    )


def test_repeats_give_intervals_and_ratios(tmp_path: Path) -> None:
    configs = [_config(n, runs[k], k + 1) for k in range(3) for n, runs in ((1, R1), (2, R2))]
    summary = build_summary(_run(tmp_path, configs, 3))
    spread = summary.analysis.repeats
    assert spread is not None
    by_label = {c.label: c for c in spread.configs}
    assert by_label["r1-u8"].runs == 3
    assert by_label["r1-u8"].rps == mean_interval(R1)
    assert by_label["r2-u8"].p95_ms == mean_interval([92.0, 92.0, 92.0])
    (scaling,) = spread.comparisons
    assert scaling.ratio == ratio_interval(R2, R1)
    eff = summary.analysis.scaling_efficiency["r2"]
    assert eff.interval == ratio_interval(R2, R1, scale=0.5)
    assert scaling.ratio.text() in summary.verdict
    assert "scaling efficiency 95%, 95% CI" in summary.verdict
    # The recommendation goes by the low end of the knee's interval, and says so.
    rec = summary.analysis.recommended
    assert rec is not None and rec.label == "r1"
    assert rec.capacity == pytest.approx(mean_interval(R1).low, abs=1e-3)
    assert "the low end" in summary.verdict
    assert "repeats" in summary.to_dict()


def test_need_rps_decided_on_the_low_end(tmp_path: Path) -> None:
    # r1's mean (80) serves 79 req/s, its interval's low end (75.0) does not: r2 is recommended.
    configs = [_config(n, runs[k], k + 1) for k in range(3) for n, runs in ((1, R1), (2, R2))]
    summary = build_summary(_run(tmp_path, configs, 3, need_rps=79.0))
    assert mean_interval(R1).low < 79.0 < mean_interval(R1).mean
    assert summary.analysis.recommended is not None and summary.analysis.recommended.label == "r2"


def test_single_run_says_no_interval(tmp_path: Path) -> None:
    summary = build_summary(_run(tmp_path, [_config(1, 80.0, 1), _config(2, 150.0, 1)], 1))
    assert f"1.88x ({SINGLE_RUN})" in summary.verdict
    assert f"80.0 req/s ({SINGLE_RUN})" in summary.verdict


def test_backend_comparison_without_a_measurable_difference(tmp_path: Path) -> None:
    configs = [
        _config(1, rps, k + 1, backend=b)
        for k in range(3)
        for b, rps in (("tf", [80.0, 84.0, 76.0][k]), ("litert", [81.0, 79.0, 83.0][k]))
    ]
    run = write_run(
        tmp_path / "run",
        ExperimentSettings(replicas=[1], backends=["tf", "litert"], users=[8], repeat=3),
        configs,
    )
    summary = build_summary(run)
    (cmp,) = [c for c in summary.analysis.repeats.comparisons if c.kind == "backend"]
    assert not cmp.ratio.measurable
    assert "no measurable difference with 3 runs" in summary.verdict


def test_unstable_measurements_are_named_and_the_recommendation_warns(tmp_path: Path) -> None:
    rule = StabilityRule()
    never = judge([WindowPoint(r, 100.0) for r in (60, 80, 100, 120)], rule).to_dict()
    settled = judge([WindowPoint(100.0, 100.0)] * 3, rule).to_dict()
    configs = [_config(1, 80.0, 1, stability=never), _config(2, 150.0, 1, stability=settled)]
    summary = build_summary(_run(tmp_path, configs, 1, until_stable=True))
    assert summary.configs[0].metrics.stability is not None
    assert not summary.configs[0].metrics.stability.stable
    assert "Never stable (the last 3 windows of 5 s within 10%" in summary.verdict
    assert "rests on measurements that never became stable (r1-u8)" in summary.verdict
