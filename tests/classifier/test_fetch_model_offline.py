"""fetch_model.py as the air-gapped build runs it: the ImageNet fixture's quantized .tflite rebuilt as a
float SavedModel (TF backend, real weights), converted to a float32 .tflite, with the uint8 fixture itself
served beside them; the same photo answers the same label on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import fetch_model
import pytest
from modelbuild.images import load_rgb

from classifier.backends import load_backend
from tests.classifier.model_fixtures import imagenet_dir_fixture  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def offline_model(imagenet_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("offline") / "model"
    tflite = imagenet_dir / "mobilenet_v2_1.0_224_quant.tflite"
    argv = [
        "--source",
        f"{fetch_model.DEQUANTIZE}{tflite}",
        "--labels",
        str(imagenet_dir / "imagenet_labels.txt"),
        "--tflite",
        f"float32,{tflite}",
        "--images",
        str(REPO / "images"),
        "--out",
        str(out),
    ]
    assert fetch_model.main(argv) == 0
    return out


def test_the_offline_model_dir_has_every_backend_file(offline_model: Path, imagenet_dir: Path) -> None:
    assert sorted(p.name for p in offline_model.iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model-uint8.tflite",
        "model.tflite",
        "saved_model",
    ]
    tflite = imagenet_dir / "mobilenet_v2_1.0_224_quant.tflite"
    assert (offline_model / "model-uint8.tflite").read_bytes() == tflite.read_bytes()
    manifest = json.loads((offline_model / "manifest.json").read_text())
    assert manifest["source"].startswith("dequantize:")
    rebuilt = manifest["dequantized"]
    assert rebuilt["passed"] is True
    assert rebuilt["source"]["sha256"] == fetch_model.sha256_file(tflite)
    assert rebuilt["per_op_check"]["max_steps"] <= rebuilt["per_op_check"]["tolerance_steps"]
    assert rebuilt["top1_check"]["top1_agree"] == rebuilt["top1_check"]["images"] > 0
    assert rebuilt["parameters"] > 3_000_000
    assert manifest["verification"]["verified"] is True


@pytest.mark.parametrize("kind", ["tf", "litert", "litert-uint8"])
def test_every_backend_names_the_cat(offline_model: Path, kind: str) -> None:
    from classifier.backends import BACKEND_KINDS

    backend = load_backend(
        kind,
        str(offline_model / BACKEND_KINDS[kind].model_file),
        str(offline_model / "labels.txt"),
        threads=1,
        inter_op_threads=1,
    )
    assert backend.name == kind
    probabilities = backend.predict(
        load_rgb(REPO / "images" / "chelsea_640x480.jpg", backend.input_size)[None]
    )
    assert backend.labels[int(probabilities[0].argmax())] == "Egyptian cat"
