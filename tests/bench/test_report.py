"""Ratios, verdicts and the Markdown table from small hand-made results (no server, no model)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.report import compute_checks, derive_notes, render_markdown

IMAGE = "chelsea_640x480.jpg"


def _point(system: str, backend: str | None, rps: float, p95: float, c: int, **extra: Any) -> dict[str, Any]:
    return {
        "system": system,
        "backend": backend,
        "batch": extra.pop("batch", 1),
        "batch_delay_ms": extra.pop("batch_delay_ms", 0.0),
        "path": extra.pop("path", "direct"),
        "image": IMAGE,
        "concurrency": c,
        "rps": rps,
        "errors": extra.pop("errors", 0),
        "latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95 * 1.2, "mean": p95 / 2},
        "server_timing_ms": {"decode": {"mean": 3.0}, "infer": {"mean": 10.0}},
        "server_cpu_percent": 100.0,
        "core_busy_percent": {"server": 100.0, "client": 10.0},
        "generator_cpu_percent": 4.0,
        **extra,
    }


def _bare(label: str, rate: float) -> dict[str, Any]:
    ms = {"mean": 500.0 / rate, "p50": 500.0 / rate}
    return {
        "label": label,
        "title": label,
        "images": {IMAGE: {"img_per_s": rate, "decode_ms": ms, "infer_ms": ms}},
    }


@pytest.fixture
def results() -> dict[str, Any]:
    return {
        "started_at": "2026-11-25T15:00:00+00:00",
        "images": {IMAGE: {"width": 640, "height": 480}},
        "host": {"cpu_model": "test CPU", "cpus": 2, "load_avg_before": [0.1, 0.2, 0.3]},
        "method": {"description": ["pinned"]},
        "bare": [_bare("tf", 40.0), _bare("litert", 100.0)],
        "points": [
            _point("service", "tf", 30.0, 40.0, 1),
            _point("service", "tf", 36.0, 120.0, 4),  # peak: 36 / 40 = 0.9 of bare
            _point("service", "tf", 28.0, 50.0, 4, path="nginx"),  # 0.7 of bare: FAIL
            _point("service", "litert", 90.0, 15.0, 1),
            _point("service", "litert", 95.0, 45.0, 4),
            _point("service", "litert", 120.0, 38.0, 4, batch=8, batch_delay_ms=5.0, mean_batch_size=3.5),
            _point("baseline", None, 10.0, 110.0, 1),
            _point("baseline", None, 11.0, 400.0, 4),
        ],
    }


def _by_name(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in checks}


def test_ratios_and_verdicts(results: dict[str, Any]) -> None:
    checks = _by_name(compute_checks(results))
    assert checks["service/bare tf direct"]["value"] == pytest.approx(0.9)
    assert checks["service/bare tf direct"]["passed"] is False  # issue 9's target is 0.92
    assert checks["service/bare tf nginx"]["value"] == pytest.approx(0.7)
    assert checks["service/bare tf nginx"]["passed"] is False
    assert checks["service/bare litert direct"]["value"] == pytest.approx(0.95)
    assert checks["service/bare litert direct"]["passed"] is True
    assert checks["service/baseline tf"]["value"] == pytest.approx(36 / 11)
    assert checks["service/baseline tf"]["passed"] is True
    # No longer targets (issue 18): shown, like the batching rows.
    for shown in ("service/baseline litert", "litert/tf service"):
        assert checks[shown]["passed"] is None and checks[shown]["target"] is None
    assert checks["service/baseline litert"]["value"] == pytest.approx(95 / 11)
    assert checks["litert/tf service"]["value"] == pytest.approx(95 / 36)
    batching = checks["batching 8 vs off litert c=4"]
    assert batching["value"] == pytest.approx(120 / 95)
    assert batching["passed"] is None and batching["target"] is None
    assert "p95 38 vs 45 ms" in batching["detail"]


def test_cpu_outside_decode_and_infer_is_a_cost_with_an_upper_target(results: dict[str, Any]) -> None:
    # Bare tf: 40 img/s at 100 % of its core = 25 ms of CPU per image; bare litert 10 ms.
    checks = _by_name(compute_checks(results))
    tf_direct = checks["CPU ms/request outside decode + infer tf direct c=4"]
    # 100 % of the core at 36 RPS = 27.78 ms per request.
    assert tf_direct["value"] == pytest.approx(1000 / 36 - 25)
    assert tf_direct["passed"] is False and tf_direct["at_most"] is True
    # 100 % at 95 RPS = 10.53 ms against 10 ms bare: 0.53 ms is within 1.2 ms.
    litert_direct = checks["CPU ms/request outside decode + infer litert direct c=4"]
    assert litert_direct["value"] == pytest.approx(1000 / 95 - 10)
    assert litert_direct["passed"] is True
    # Only the level it names: tf nginx has c=4, litert nginx has no point at all.
    assert "CPU ms/request outside decode + infer tf nginx c=4" in checks
    assert "CPU ms/request outside decode + infer litert nginx c=4" not in checks


def test_bare_cpu_share_discounts_what_others_took(results: dict[str, Any]) -> None:
    # A bare loop that had only 80 % of its core: its CPU per image is 80 % of its wall time per image.
    results["bare"][0]["images"][IMAGE]["cpu_percent"] = 80.0
    checks = _by_name(compute_checks(results))
    assert checks["CPU ms/request outside decode + infer tf direct c=4"]["value"] == pytest.approx(
        1000 / 36 - 20
    )


def test_litert_lead_through_nginx_against_the_bare_lead(results: dict[str, Any]) -> None:
    results["points"].append(_point("service", "litert", 60.0, 20.0, 4, path="nginx"))
    checks = _by_name(compute_checks(results))
    lead = checks["litert/tf nginx vs bare"]
    # Through nginx 60 / 28 = 2.14x against 100 / 40 = 2.5x bare.
    assert lead["value"] == pytest.approx((60 / 28) / 2.5)
    assert lead["passed"] is False


def test_throughput_alone_does_not_pass_with_a_higher_p95(results: dict[str, Any]) -> None:
    slower = copy.deepcopy(results)
    for point in slower["points"]:
        if point["system"] == "baseline" and point["concurrency"] == 1:
            point["latency_ms"]["p95"] = 12.0  # beats both services at c=1 (15, 40 ms)
    checks = _by_name(compute_checks(slower))
    assert checks["service/baseline tf"]["value"] >= 3
    assert checks["service/baseline tf"]["passed"] is False
    assert "NOT lower at c=[1]" in checks["service/baseline tf"]["detail"]
    # A shown ratio stays shown; its detail still says so.
    assert checks["service/baseline litert"]["passed"] is None
    assert "NOT lower at c=[1]" in checks["service/baseline litert"]["detail"]


def test_missing_baseline_data_is_not_a_pass(results: dict[str, Any]) -> None:
    broken = copy.deepcopy(results)
    for point in broken["points"]:
        if point["system"] == "baseline":
            point["rps"] = 0.0
    checks = _by_name(compute_checks(broken))
    assert checks["service/baseline tf"]["passed"] is None
    assert "| no data |" in render_markdown({**broken, "checks": list(checks.values())})


def test_notes_explain_a_missed_target_with_measured_numbers(results: dict[str, Any]) -> None:
    notes = derive_notes(results)
    nginx_note = next(n for n in notes if "tf nginx" in n)
    assert "0.70x of bare" in nginx_note
    # 100 % of a core at 28 RPS is 35.7 ms per request against 25 ms per image bare.
    assert "35.7 ms of core per request against 25.0 ms" in nginx_note
    assert any(n.startswith("Load generator: at most 4%") for n in notes)


def test_markdown_tables(results: dict[str, Any]) -> None:
    results["checks"] = compute_checks(results)
    text = render_markdown(results)
    assert "| TF SavedModel" not in text.split("### Over HTTP")[0]  # bare rows use the entries' titles
    assert "| tf | **40.0** (12.5 + 12.5) |" in text
    assert "| c=1 | c=4 |" in text
    assert "| service LiteRT float32, direct, batch ≤8, 5 ms |  | **120.0** (19 / 38 / 46) |" in text
    assert "| baseline (tutorial-style, Keras predict) | **10.0** (55 / 110 / 132) | **11.0**" in text
    assert "| 640x480 JPEG | service/bare tf nginx | 0.70x | ≥ 0.92x | FAIL |" in text
    assert "| CPU ms/request outside decode + infer tf direct c=4 | 2.78 ms | ≤ 1.2 ms | FAIL |" in text
    assert "| shown |" in text


def test_no_longer_targets_are_shown_not_failed(results: dict[str, Any]) -> None:
    slow = copy.deepcopy(results)
    for point in slow["points"]:
        if point["backend"] == "litert":
            point["rps"] /= 2  # 47.5 vs 36: 1.32x, below the old 2.5x; 4.3x the baseline, below the old 8x
    slow["checks"] = compute_checks(slow)
    text = render_markdown(slow)
    assert "| 640x480 JPEG | litert/tf service | 1.32x | - | shown |" in text
    assert "| 640x480 JPEG | service/baseline litert | 4.32x | - | shown |" in text
    notes = derive_notes(slow)
    assert not any("service litert vs baseline" in note for note in notes)
    # The LiteRT/TF ratio is still explained from the runtimes alone (bare infer 12.5 vs 5.0 ms).
    note = next(n for n in notes if "LiteRT/TF" in n)
    assert "1.32x in the service" in note and "12.5 ms (TF) vs 5.0 ms (LiteRT) = 2.50x" in note
    assert "target" not in note


def test_disturbed_numbers_are_marked(results: dict[str, Any]) -> None:
    results["method"].update(max_interference_percent=10.0, retries_per_measurement=2)
    results["points"][0]["interference_percent"] = 30.0  # tf direct c=1: 30 RPS
    results["points"][1]["interference_percent"] = 5.0
    text = render_markdown(results)
    assert "**30.0**† (20 / 40 / 48)" in text
    assert "**36.0** (60 / 120 / 144)" in text
    assert "† other processes took more than 10% of the measured core even after 2 repeats" in text
    results["points"][0]["interference_percent"] = 3.0
    assert "†" not in render_markdown(results)


def test_the_run_s_recorded_limit_drives_marks_and_notes(results: dict[str, Any]) -> None:
    # 25 % of the core taken by others: disturbed under a 10 % limit, not under the 30 % this run used.
    results["points"][2]["interference_percent"] = 25.0  # tf nginx c=4, a missed target with a note
    results["method"].update(max_interference_percent=30.0, retries_per_measurement=2)
    text = render_markdown({**results, "notes": derive_notes(results)})
    assert "†" not in text
    assert "rerun on a quiet machine" not in text and "which alone lowers its RPS" not in text
    results["method"]["max_interference_percent"] = 10.0
    text = render_markdown({**results, "notes": derive_notes(results)})
    assert "**28.0**†" in text
    assert "rerun on a quiet machine" in text and "which alone lowers its RPS" in text


def test_retries_stop_at_the_limit_per_measurement_and_budget() -> None:
    from bench.__main__ import Retries

    retries = Retries(limit=10.0, per_measurement=2, budget=3)
    assert not retries.again(9.0, attempt=1)  # quiet enough
    assert retries.again(30.0, attempt=1) and retries.again(30.0, attempt=2)
    assert not retries.again(30.0, attempt=3)  # two repeats of this measurement already
    assert retries.again(50.0, attempt=1)
    assert not retries.again(50.0, attempt=1)  # the run's budget is spent
    assert retries.used == 3


def test_baseline_note_splits_decode_predict_and_the_direct_call(results: dict[str, Any]) -> None:
    ms = {"mean": 0.0}
    tutorial = {
        "img_per_s": 7.0,
        "decode_ms": {**ms, "mean": 40.0},
        "infer_ms": {**ms, "mean": 100.0},
        "keras_call_ms": {**ms, "mean": 25.0},
        "cpu_percent": 80.0,
    }
    results["bare"].append({"label": "tutorial", "title": "Tutorial-style", "images": {IMAGE: tutorial}})
    note = next(n for n in derive_notes(results) if "why the baseline is slow" in n)
    assert "PIL decode at full size 40.0 ms + model.predict() 100.0 ms" in note
    assert "directly takes 25.0 ms" in note and "(about 75 ms)" in note
    assert "draft mode (12.5 ms)" in note and "used 80% of its core" in note
    assert "| Tutorial-style | **7.0** (40.0 + 100.0) |" in render_markdown(results)


def test_a_ratio_that_rounds_to_its_target_but_fails_shows_the_third_digit(results: dict[str, Any]) -> None:
    # 36.72 / 40 = 0.918: "0.92x | ≥ 0.92x | FAIL" would read as a contradiction.
    results["points"][2] = _point("service", "tf", 36.72, 50.0, 4, path="nginx")
    results["checks"] = compute_checks(results)
    text = render_markdown(results)
    assert "| 640x480 JPEG | service/bare tf nginx | 0.918x | ≥ 0.92x | FAIL |" in text
    assert "| 640x480 JPEG | service/bare tf direct | 0.90x | ≥ 0.92x | FAIL |" in text


def test_int8_is_judged_on_the_model_call_and_decode_plus_infer_is_shown(results: dict[str, Any]) -> None:
    # 2026-12-03's quick run at 640x480: decode 3.0 / 2.8 ms, model call 11.1 ms float32 vs 6.1 ms int8.
    def bare(label: str, decode: float, infer: float) -> dict[str, Any]:
        rate = 1000.0 / (decode + infer)
        image = {"img_per_s": rate, "decode_ms": {"mean": decode}, "infer_ms": {"mean": infer}}
        return {"label": label, "title": label, "images": {IMAGE: image}}

    results["bare"] = [bare("litert", 3.0, 11.1), bare("litert-int8", 2.8, 6.1)]
    checks = _by_name(compute_checks(results))
    model_call = checks["int8/float32 inference"]
    assert model_call["value"] == pytest.approx(11.1 / 6.1) and model_call["target"] == 1.8
    assert model_call["passed"] is True  # 1.82x
    whole = checks["int8/float32 bare decode + infer"]
    assert whole["value"] == pytest.approx(14.1 / 8.9) and whole["target"] is None and whole["passed"] is None
    (note,) = [n for n in derive_notes(results) if "int8/float32" in n]
    # 1.8x on decode + infer: int8's call may take 14.1 / 1.8 - 2.8 = 5.03 ms, 11.1 / 5.03 = 2.21x faster.
    assert "= 1.82x (target 1.8x)" in note and "leaves 1.58x of decode + infer (shown)" in note
    assert "a 2.21x faster model call" in note
    results["bare"][1] = bare("litert-int8", 2.8, 6.5)
    assert _by_name(compute_checks(results))["int8/float32 inference"]["passed"] is False  # 1.71x
    # A large decode: no model call, however fast, brings decode + infer to 1.8x.
    results["bare"] = [bare("litert", 6.0, 4.0), bare("litert-int8", 6.0, 2.0)]
    (note,) = [n for n in derive_notes(results) if "int8/float32" in n]
    assert "more than an instant model call" in note
