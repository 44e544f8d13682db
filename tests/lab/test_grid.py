"""The grid, labels, validation, open-model users, ramp steps and the time estimate (no Docker)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.grid import (
    DEFAULT_MAX_FAILURE_RATIO,
    MEASUREMENT_OVERHEAD_S,
    ExperimentSettings,
    LoadLevel,
    RunPlan,
    StackConfig,
    config_label,
    estimate_seconds,
    expand,
    load_label,
    ramp_levels,
    users_for_rate,
)
from lab.stacks import classifier_env_for, stack_kind
from lab.units import format_duration, parse_duration, parse_list


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20s", 20), ("20", 20), ("1m30s", 90), ("2m", 120), ("1h2m", 3720), ("500ms", 0.5), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "20x", "1m 30s", "-5s", "m20"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5, 90, 3725)] == ["5s", "1m30s", "1h02m"]


def test_parse_list_dedups_and_reports_the_bad_token() -> None:
    assert parse_list("4, 1,4,2", int, "replica count") == [4, 1, 2]
    with pytest.raises(ValueError, match="invalid replica count 'x'"):
        parse_list("1,x", int, "replica count")
    with pytest.raises(ValueError, match="no replica count"):
        parse_list(" , ", int, "replica count")


def test_grid_order_labels_and_size() -> None:
    settings = ExperimentSettings(
        replicas=[1, 2, 4], workers_per_replica=[1, 2], backends=["tf", "litert"], batching=["off", "on"],
        users=[8, 32], repeat=2,
    )  # fmt: skip
    plan = expand(settings)
    assert len(plan) == 3 * 2 * 2 * 2 * 2 * 2
    assert [p.index for p in plan] == list(range(1, len(plan) + 1))
    assert len({p.label for p in plan}) == len(plan)
    # Repeats are rounds (lab/rounds.py); within one, replicas vary fastest among stack settings (scaling
    # without recreating), loads inside.
    assert [p.label for p in plan[:4]] == [
        "r1-w1-tf-nobatch-u8-rep1", "r1-w1-tf-nobatch-u32-rep1", "r2-w1-tf-nobatch-u8-rep1",
        "r2-w1-tf-nobatch-u32-rep1",
    ]  # fmt: skip
    assert plan[0].dirname == "01-r1-w1-tf-nobatch-u8-rep1"
    half = len(plan) // 2
    assert plan[half - 1].stack == StackConfig(4, 2, "litert", "on") and plan[half - 1].repeat == 1
    # Round 2 is round 1 rotated by one: it starts at round 1's second configuration.
    assert plan[half].label == "r1-w1-tf-nobatch-u32-rep2" and plan[-1].label == "r1-w1-tf-nobatch-u8-rep2"


def test_labels_leave_out_unset_dimensions() -> None:
    plan = expand(ExperimentSettings(replicas=[1, 2], users=[8]))
    assert [p.label for p in plan] == ["r1-u8", "r2-u8"]
    assert [p.stack.label for p in plan] == ["r1", "r2"]


def test_open_model_users_and_labels() -> None:
    assert users_for_rate(50, 250) == 100  # window max(2 s, 4 x 0.25 s) = 2 s
    assert users_for_rate(50, 1000) == 200  # 4 s of arrivals in flight
    assert users_for_rate(0.2, 100) == 1
    plan = expand(ExperimentSettings(replicas=[2], rates=[12.5], expected_latency_ms=500))
    assert plan[0].load.target_rps == 12.5 and plan[0].load.users == 25
    assert plan[0].label == "r2-rate12.5-u25" and plan[0].load.mode == "open"


def test_ramp_levels_closed_and_open() -> None:
    closed = ExperimentSettings(replicas=[1], users=[8], ramp=True, max_steps=4)
    assert [lv.users for lv in ramp_levels(closed)] == [8, 16, 24, 32]
    stepped = ExperimentSettings(replicas=[1], users=[8], ramp=True, ramp_step=4, max_steps=3)
    assert [lv.users for lv in ramp_levels(stepped)] == [8, 12, 16]
    open_ = ExperimentSettings(replicas=[1], rates=[20], ramp=True, ramp_step=10, max_steps=3)
    assert [(lv.target_rps, lv.users) for lv in ramp_levels(open_)] == [(20, 40), (30, 60), (40, 80)]
    # A ramp runs one configuration per stack setting: the steps live inside it.
    assert len(expand(ExperimentSettings(replicas=[1, 2], users=[8], ramp=True))) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"users": None}, "exactly one of --users"),
        ({"rates": [10.0]}, "exactly one of --users"),
        ({"replicas": [0]}, "--replicas"),
        ({"backends": ["onnx"]}, "--backend"),
        ({"batching": ["maybe"]}, "--batching"),
        ({"users": [8, 16], "ramp": True}, "--ramp starts from one load value"),
        ({"duration_s": 0}, "--duration"),
        ({"warmup_s": -1}, "--warmup"),
        ({"max_failure_ratio": 1.5}, "--max-failure-ratio"),
        ({"slo_p95_ms": 0}, "--slo-p95-ms"),
        ({"repeat": 0}, "--repeat"),
        ({"batching": ["on"], "max_batch_size": 1}, "--max-batch-size"),
        ({"need_rps": -1}, "--need-rps"),
        ({"arrivals": "burst"}, "--arrivals: choose from poisson, even"),
    ],
)
def test_validation(changes: dict, message: str) -> None:
    settings = ExperimentSettings(replicas=[1, 2], users=[8])
    for key, value in changes.items():
        setattr(settings, key, value)
    with pytest.raises(ValueError, match=message):
        expand(settings)


def test_time_estimate_counts_stack_changes_warmup_and_overhead() -> None:
    settings = ExperimentSettings(
        replicas=[1, 2], workers_per_replica=[1, 2], users=[8], duration_s=20, warmup_s=5
    )
    plan = expand(settings)
    estimates = estimate_seconds(settings, plan, stack_change_s=40)
    per_measure = 5 + MEASUREMENT_OVERHEAD_S + 20 + MEASUREMENT_OVERHEAD_S
    # r1-w1 (first: set up), r2-w1 (more replicas: new containers), r1-w2 (workers change), r2-w2.
    assert estimates == [40 + per_measure] * 4
    down = ExperimentSettings(replicas=[2, 1], users=[8], duration_s=20, warmup_s=0)
    assert estimate_seconds(down, expand(down), stack_change_s=40) == [
        40 + 20 + MEASUREMENT_OVERHEAD_S,
        20 + MEASUREMENT_OVERHEAD_S,  # scaling down recreates nothing
    ]
    ramp = ExperimentSettings(replicas=[1], users=[8], ramp=True, max_steps=3, step_duration_s=10, warmup_s=0)
    assert estimate_seconds(ramp, expand(ramp), stack_change_s=0) == [3 * (10 + MEASUREMENT_OVERHEAD_S)]


def test_classifier_env_for_keeps_what_the_grid_leaves_alone() -> None:
    base = {"CLASSIFIER_WORKERS": "3", "CLASSIFIER_BACKEND": "tf", "CLASSIFIER_MAX_BATCH_SIZE": "4",
            "CLASSIFIER_THREADS": "1"}  # fmt: skip
    settings = ExperimentSettings(replicas=[2], users=[8], max_batch_size=16, max_batch_delay_ms=2.5)
    env = classifier_env_for(StackConfig(2), settings, base)
    assert env == {**base, "CLASSIFIER_REPLICAS": "2"}
    env = classifier_env_for(StackConfig(4, 1, "litert", "on"), settings, base)
    assert env == {
        "CLASSIFIER_WORKERS": "1", "CLASSIFIER_BACKEND": "litert", "CLASSIFIER_MAX_BATCH_SIZE": "16",
        "CLASSIFIER_MAX_BATCH_DELAY_MS": "2.5", "CLASSIFIER_THREADS": "1", "CLASSIFIER_REPLICAS": "4",
    }  # fmt: skip
    assert (
        classifier_env_for(StackConfig(1, batching="off"), settings, base)["CLASSIFIER_MAX_BATCH_SIZE"] == "1"
    )


def test_compare_defaults_and_help_come_from_the_settings() -> None:
    # Nothing but the grid given: the estimate is the one of ExperimentSettings' own defaults.
    result = CliRunner().invoke(app, ["compare", "--replicas", "1,2", "--users", "8", "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = RunPlan.of(ExperimentSettings(replicas=[1, 2], users=[8]), stack_kind("compose").change_s)
    assert f"estimated {format_duration(plan.total_s)}" in result.output
    assert [f"~{format_duration(s)}" in result.output for s in plan.estimates] == [True, True]
    help_text = " ".join(
        CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "400"}).output.split()
    )
    shown = {
        "duration": ("duration_s", "60s"), "warmup": ("warmup_s", "15s"), "max-steps": ("max_steps", "8"),
        "step-duration": ("step_duration_s", "30s"), "repeat": ("repeat", "1"),
        "arrivals": ("arrivals", "poisson"), "max-batch-size": ("max_batch_size", "8"),
        "expected-latency-ms": ("expected_latency_ms", "250"),
    }  # fmt: skip
    for option, (name, text) in shown.items():
        value = ExperimentSettings.default(name)
        assert str(value) == text or parse_duration(text) == value, name  # the settings' value, shown
        assert re.search(rf"--{option} .*?\(default: {text}\)", help_text), option


def test_a_threshold_is_given_when_its_option_is_whatever_its_value() -> None:
    assert not ExperimentSettings(replicas=[1], users=[8]).thresholds_given
    at_default = ExperimentSettings(replicas=[1], users=[8], max_failure_ratio=DEFAULT_MAX_FAILURE_RATIO)
    assert at_default.thresholds_given and at_default.failure_limit == DEFAULT_MAX_FAILURE_RATIO
    assert ExperimentSettings(replicas=[1], users=[8]).failure_limit == DEFAULT_MAX_FAILURE_RATIO
    assert ExperimentSettings(replicas=[1], users=[8], need_rps=5).thresholds_given


def test_one_label_function_for_folders_and_report_rows() -> None:
    assert load_label(8, None) == LoadLevel(8).label == "u8"
    assert load_label(25, 12.5) == LoadLevel(25, 12.5).label == "rate12.5-u25"
    assert load_label(100, 50.0) == "rate50-u100"
    assert config_label("r2", "u8", 2, 3) == "r2-u8-rep2" and config_label("r2", "u8") == "r2-u8"
