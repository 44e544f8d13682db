"""fetch_model.py as the air-gapped build runs it: the random-weight MobileNetV2 stand-in for the TF backend,
with the real ImageNet .tflite served beside it by the LiteRT backend."""

from __future__ import annotations

import json
from pathlib import Path

import fetch_model
import numpy as np
import pytest

from classifier.backends import load_backend
from tests.classifier.model_fixtures import imagenet_dir_fixture  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.slow


def test_standin_savedmodel_with_a_given_tflite(imagenet_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    tflite = imagenet_dir / "mobilenet_v2_1.0_224_quant.tflite"
    labels = imagenet_dir / "imagenet_labels.txt"
    code = fetch_model.main(
        ["--source", fetch_model.STANDIN, "--labels", str(labels), "--tflite", str(tflite), "--out", str(out)]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model.tflite",
        "saved_model",
    ]
    assert (out / "model.tflite").read_bytes() == tflite.read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["verified"] is True
    assert manifest["verification"]["saved_model"]["num_classes"] == 1001

    # The stand-in has the TF Hub model's interface: [0, 1] floats in, 1001 logits out (softmax applied).
    tf_backend = load_backend(
        "tf", str(out / "saved_model"), str(out / "labels.txt"), threads=1, inter_op_threads=1
    )
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    probs = tf_backend.predict(batch)
    assert probs.shape == (3, 1001)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_a_missing_tflite_path_fails_before_any_work(
    imagenet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = str(imagenet_dir / "imagenet_labels.txt")
    args = [
        "--source",
        fetch_model.STANDIN,
        "--labels",
        labels,
        "--tflite",
        "nope.tflite",
        "--out",
        str(tmp_path),
    ]
    assert fetch_model.main(args) == 1
    assert (
        "--tflite nope.tflite: neither none, float32, nor an existing .tflite file" in capsys.readouterr().err
    )
    assert not (tmp_path / "saved_model").exists()
