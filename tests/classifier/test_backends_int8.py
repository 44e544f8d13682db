"""modelbuild.quantize through fetch_model.py: `--tflite int8` makes a full-integer, per-channel int8 .tflite
from a SavedModel, calibrated on a folder of photos, checks it against the float model, and records that."""

from __future__ import annotations

import json
from pathlib import Path

import fetch_model
import numpy as np
import pytest
from modelbuild.quantize import AGREEMENT, weight_quantization

from classifier.backends import BACKEND_KINDS, load_backend
from tests.classifier.model_fixtures import (
    STANDIN_SIZE,
    StandinModel,
    standin_model_fixture,  # noqa: F401  (pytest fixture)
    standin_reference,
)

pytestmark = pytest.mark.slow


def _photos(directory: Path, count: int = 4) -> Path:
    """Blocks of colour as PNGs: a tiny calibration set (and the probe photos of the check)."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    for index in range(count):
        blocks = rng.integers(0, 256, (7, 7, 3), dtype=np.uint8)
        Image.fromarray(np.kron(blocks, np.ones((32, 32, 1), np.uint8))).save(directory / f"p{index}.png")
    return directory


def _int8_argv(standin: StandinModel, images: Path, out: Path) -> list[str]:
    source, labels = str(standin.saved_model_dir), str(standin.labels_path)
    return [
        "--source",
        source,
        "--labels",
        labels,
        "--tflite",
        "int8",
        "--images",
        str(images),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def int8_model(standin_model: StandinModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("int8")
    assert fetch_model.main(_int8_argv(standin_model, _photos(root / "photos"), root / "model")) == 0
    return root / "model"


def test_the_file_is_full_integer_int8_per_channel(int8_model: Path) -> None:
    path = int8_model / fetch_model.TFLITE_FILES["int8"]
    quantization = weight_quantization(path)
    assert quantization["input_dtype"] == quantization["output_dtype"] == "int8"
    assert quantization["weight_dtypes"] == ["int8"]
    assert quantization["conv_layers"] >= 1
    assert quantization["per_channel"] is True


def test_the_manifest_records_calibration_and_agreement(int8_model: Path) -> None:
    manifest = json.loads((int8_model / "manifest.json").read_text())
    record = manifest["int8"]
    assert record["calibration"]["photos"] == 4
    assert len(record["calibration"]["sha256"]) == 64
    check = record["agreement"]
    assert check["passed"] is True
    assert check["threshold"] == {"max_top1_misses": 1, "max_mean_abs_diff": 0.05}
    assert check["photos"] - check["top1_agree"] <= AGREEMENT.max_top1_misses
    assert check["mean_abs_diff_top5"] <= AGREEMENT.max_mean_abs_diff
    assert manifest["verification"]["model-int8.tflite"]["outputs"] == "probabilities"


def test_the_int8_backend_answers_like_the_float_model(int8_model: Path) -> None:
    backend = load_backend(
        "litert-int8",
        str(int8_model / BACKEND_KINDS["litert-int8"].model_file),
        str(int8_model / "labels.txt"),
        threads=1,
        inter_op_threads=1,
    )
    assert backend.name == "litert-int8"
    # GET /model shows what the build measured next to the backend's name.
    check = backend.info()["build_check"]
    assert check is not None and check["passed"] is True and check["photos"] == 4
    blocks = np.random.default_rng(5).integers(0, 256, (6, 7, 7, 3), dtype=np.uint8)
    images = np.stack([np.kron(b, np.ones((32, 32, 1), np.uint8)) for b in blocks])
    assert images.shape[1:3] == STANDIN_SIZE
    quantized, expected = backend.predict(images), standin_reference(images)
    top5 = np.argsort(-expected, axis=1)[:, :5]
    rows = np.arange(len(images))[:, None]
    assert np.abs(quantized[rows, top5] - expected[rows, top5]).mean() <= AGREEMENT.max_mean_abs_diff


def test_an_empty_calibration_folder_is_refused(
    standin_model: StandinModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    assert fetch_model.main(_int8_argv(standin_model, tmp_path / "empty", tmp_path / "model")) == 1
    error = capsys.readouterr().err
    assert "int8 quantization needs calibration images" in error and "MODEL_CALIBRATION_DIR" in error
    assert not (tmp_path / "model" / "model-int8.tflite").exists()
