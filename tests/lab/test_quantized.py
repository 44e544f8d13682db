"""A quantized model in `lab compare`: what GET /model said is recorded per configuration (ServedModel), and
the capacity table, the recommendation and the verdict give its throughput against the other backend with
the build's agreement check beside it, with an interval over runs or "single run"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.grid import ExperimentSettings, LoadLevel, StackConfig
from lab.intervals import SINGLE_RUN, ratio_interval
from lab.report import CAPACITY_HEADER, QUANTIZED_HEADER, capacity_header, capacity_rows, render_markdown
from lab.results import Agreement, ConfigRecord, ServedModel
from lab.summary import Summary, summarise
from tests.lab.golden import Config, Measurement, records, row_with

INT8_CHECK = {
    "photos": 7, "top1_agree": 6, "mean_abs_diff_top5": 0.0191, "max_abs_diff": 0.0832,
    "threshold": {"max_top1_misses": 1, "max_mean_abs_diff": 0.05}, "passed": True,
}  # fmt: skip
# The float .tflite's check against the SavedModel it was rebuilt from: not an agreement with a float model.
FLOAT_CHECK = {"images": 7, "top1_agree": 7, "mean_abs_diff": 1e-05, "max_abs_diff": 0.0003}


def model_info(backend: str, check: dict[str, Any] | None) -> dict[str, Any]:
    """GET /model's answer (classifier/schemas.py ModelInfo), as the stack's describe() records it."""
    file = {"litert": "model.tflite", "litert-int8": "model-int8.tflite"}[backend]
    return {
        "model": "mobilenet_v2", "model_path": f"/models/{file}", "labels_path": "/models/labels.txt",
        "backend": backend, "input_size": [224, 224], "label_count": 1001, "top_k": 5,
        "batching": {"enabled": False, "max_batch_size": 1, "max_batch_delay_ms": 5.0},
        "threads": {"intra_op": 1, "inter_op": 1, "decode": 1}, "workers_per_replica": 1, "pid": 7,
        "hostname": "c1",
        "backend_info": {
            "backend": backend, "build_check": check, "model_path": f"/models/{file}",
            "input_dtype": "int8" if backend.endswith("int8") else "float32", "num_classes": 1001,
        },
    }  # fmt: skip


INT8 = ServedModel.from_model_info(model_info("litert-int8", INT8_CHECK))
FLOAT = ServedModel.from_model_info(model_info("litert", FLOAT_CHECK))


def test_get_model_is_read_into_a_typed_record() -> None:
    int8 = ServedModel.from_model_info(model_info("litert-int8", INT8_CHECK))
    assert int8 == ServedModel(
        backend="litert-int8",
        model_path="/models/model-int8.tflite",
        input_dtype="int8",
        agreement=Agreement(photos=7, top1_agree=6, mean_abs_diff=0.0191, max_abs_diff=0.0832, passed=True),
    )
    assert FLOAT is not None and FLOAT.backend == "litert" and FLOAT.agreement is None
    unread = ServedModel.from_model_info({"error": "connection refused"})
    assert unread == ServedModel(error="connection refused")
    assert ServedModel.from_model_info(None) is None  # a stack that does not read it (external)
    assert Agreement.from_build_check({"photos": 7}) is None


def test_config_json_round_trips_it_and_an_older_file_reads_it_from_the_stack_description() -> None:
    config = ConfigRecord(1, "r1-litert-int8-u8", StackConfig(1, None, "litert-int8"), LoadLevel(8))
    config = ConfigRecord(**{**config.__dict__, "served_model": INT8})
    data = json.loads(json.dumps(config.to_dict()))
    assert data["served_model"]["agreement"]["top1_agree"] == 6
    assert ConfigRecord.from_dict(data) == config
    # Written before the field: GET /model's answer was only in stack_after_setup.
    older = {k: v for k, v in data.items() if k != "served_model"}
    older["stack_after_setup"] = {"model": model_info("litert-int8", INT8_CHECK), "ps": []}
    assert ConfigRecord.from_dict(older).served_model == INT8
    assert ConfigRecord.from_dict({k: v for k, v in data.items() if k != "served_model"}).served_model is None


def _configs(float_runs: list[float], int8_runs: list[float], replicas: int = 1) -> list[Config]:
    def config(backend: str, rps: float, repeat: int, served: ServedModel | None) -> Config:
        rows = [row_with("/predict", int(rps * 20), rps, 40.0, 90.0, 120.0)]
        return Config(replicas, [Measurement(8, rows)], backend=backend, repeat=repeat, served_model=served)

    return [
        c
        for k, (f, i) in enumerate(zip(float_runs, int8_runs, strict=True))
        for c in (config("litert", f, k + 1, FLOAT), config("litert-int8", i, k + 1, INT8))
    ]


def _summary(configs: list[Config], repeat: int, **thresholds: Any) -> Summary:
    asked = ExperimentSettings(
        replicas=[1], backends=["litert", "litert-int8"], users=[8], repeat=repeat, **thresholds
    )
    run, measured = records(asked, configs)
    return summarise(run, measured)


def _row(summary: Summary, label: str) -> dict[str, str]:
    (row,) = [r for r in capacity_rows(summary) if r.cells[0].lstrip("★ ") == label]
    return dict(zip(capacity_header(summary), row.cells, strict=True))


def test_one_run_shows_the_ratio_as_a_single_run_beside_the_agreement() -> None:
    summary = _summary(_configs([60.0], [96.0]), 1)
    analysis = summary.analysis
    (tradeoff,) = analysis.tradeoffs
    # The quantized model first, whatever the labels' order: its ratio is what quantizing bought.
    assert (tradeoff.label, tradeoff.against) == ("r1-litert-int8", "r1-litert")
    assert tradeoff.comparison.ratio.ratio == pytest.approx(1.6)
    assert capacity_header(summary) == CAPACITY_HEADER + QUANTIZED_HEADER
    int8 = _row(summary, "r1-litert-int8")
    assert int8[QUANTIZED_HEADER[0]] == f"1.60x ({SINGLE_RUN}) vs r1-litert"
    assert int8[QUANTIZED_HEADER[1]] == "top-1 6/7 photos, mean |Δp| 0.019"
    assert _row(summary, "r1-litert")[QUANTIZED_HEADER[0]] == "—"
    assert _row(summary, "r1-litert")[QUANTIZED_HEADER[1]] == "—"
    # The fewest processes tie; int8 has the higher capacity, so it is recommended, and the headline says
    # its speed and its accuracy in one sentence, not repeated further on.
    assert analysis.recommended is not None and analysis.recommended.label == "r1-litert-int8"
    said = (
        f"Its model is quantized: 1.60x ({SINGLE_RUN}) the throughput of r1-litert at the same replica "
        "count, and it agreed with the float model on top-1 for 6 of 7 probe photos (mean |Δp| 0.019 over "
        "the float top-5; the image build's check)."
    )
    assert said in summary.verdict
    assert summary.verdict.count("6 of 7 probe photos") == 1
    md = render_markdown(summary)
    assert "| Agreement with float (build check) |" in md and "top-1 6/7 photos" in md
    on_disk = summary.to_dict()
    int8_config = next(c for c in on_disk["configs"] if c["backend"] == "litert-int8")
    assert int8_config["served_model"]["agreement"]["photos"] == 7
    (traded,) = json.loads(json.dumps(on_disk))["tradeoffs"]
    assert (traded["label"], traded["against"], traded["agreement"]["top1_agree"]) == (
        "r1-litert-int8", "r1-litert", 6,
    )  # fmt: skip
    assert traded["comparison"]["ratio"]["ratio"] == pytest.approx(1.6)


def test_repeats_give_the_ratio_its_interval_and_the_verdict_keeps_the_agreement_beside_it() -> None:
    float_runs, int8_runs = [60.0, 64.0, 58.0], [96.0, 101.0, 93.0]
    summary = _summary(_configs(float_runs, int8_runs), 3)
    expected = ratio_interval(int8_runs, float_runs)
    (tradeoff,) = summary.analysis.tradeoffs
    assert tradeoff.comparison.ratio == expected and expected.has_interval and expected.measurable
    cell = _row(summary, "r1-litert-int8")[QUANTIZED_HEADER[0]]
    assert cell == f"{expected.text()} vs r1-litert" and "95% CI" in cell and "3 runs" in cell
    assert f"{expected.text()} the throughput of r1-litert" in summary.verdict
    assert "6 of 7 probe photos" in summary.verdict


def test_when_the_float_model_is_recommended_the_comparison_sentence_carries_the_agreement() -> None:
    configs = _configs([60.0], [96.0])
    slow = row_with("/predict", 96 * 20, 96.0, 40.0, 300.0, 400.0)  # int8 misses p95 <= 200 ms
    configs[1] = Config(1, [Measurement(8, [slow])], backend="litert-int8", served_model=INT8)
    summary = _summary(configs, 1, slo_p95_ms=200.0)
    assert summary.analysis.recommended is not None and summary.analysis.recommended.label == "r1-litert"
    sentence = (
        f"R1-litert-int8 vs r1-litert throughput at the same replica count: 1.60x ({SINGLE_RUN}); its model "
        "agreed with the float model on top-1 for 6 of 7 probe photos"
    )
    assert sentence in summary.verdict
    assert "Its model is quantized" not in summary.verdict


def test_a_run_without_a_quantized_model_keeps_its_table() -> None:
    configs = [
        Config(1, [Measurement(8, [row_with("/predict", 1200, 60.0, 40.0, 90.0, 120.0)])], backend=b,
               served_model=FLOAT)
        for b in ("litert", "tf")
    ]  # fmt: skip
    summary = _summary(configs, 1)
    assert capacity_header(summary) == CAPACITY_HEADER
    assert not summary.analysis.tradeoffs and not summary.analysis.agreement
    assert all(len(r.cells) == len(CAPACITY_HEADER) for r in capacity_rows(summary))
