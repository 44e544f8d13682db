"""Both backends against the stand-in SavedModel (and its .tflite conversions) and the real ImageNet model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from classifier.backends import Backend, ModelError, load_backend
from classifier.backends.common import probe_batch
from classifier.backends.litert import pixel_lookup_table
from classifier.labels import LabelsError
from classifier.preprocess import decode_image
from tests.classifier.model_fixtures import (
    STANDIN_CLASSES,
    STANDIN_SIZE,
    StandinModel,
    build_standin_savedmodel,
    convert_to_quantized_tflite,
    imagenet_dir_fixture,  # noqa: F401 (pytest finds fixtures by name in this module)
    litert_imagenet_fixture,  # noqa: F401
    standin_labels,
    standin_model_fixture,  # noqa: F401
    standin_reference,
    standin_tflite_fixture,  # noqa: F401
    tf_imagenet_fixture,  # noqa: F401
    write_labels,
)

CAT_LABELS = {"Egyptian cat", "tabby, tabby cat"}
REPO_IMAGES = Path(__file__).resolve().parents[2] / "images"
SERVICE_DIR = Path(__file__).resolve().parents[2] / "services" / "classifier"


def random_images(count: int, seed: int) -> np.ndarray:
    """Smooth random images: noise at 8x8 cells plus fine noise, so pooled features vary between images."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, 8, 8, 3)).repeat(28, axis=1).repeat(28, axis=2)
    fine = rng.integers(-20, 21, (count, *STANDIN_SIZE, 3))
    return np.clip(coarse + fine, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tf_standin(standin_model: StandinModel) -> Backend:
    return load_backend(
        "tf",
        str(standin_model.saved_model_dir),
        str(standin_model.labels_path),
        threads=1,
        inter_op_threads=1,
    )


@pytest.fixture(scope="session")
def litert_standin(standin_model: StandinModel, standin_tflite: Path) -> Backend:
    return load_backend(
        "litert", str(standin_tflite), str(standin_model.labels_path), threads=1, inter_op_threads=1
    )


def classify(backend: Backend, image_path: Path) -> tuple[str, float]:
    image = decode_image(image_path.read_bytes(), backend.input_size)
    probabilities = backend.predict(image[None])[0]
    best = int(np.argmax(probabilities))
    return backend.labels[best], float(probabilities[best])


# --- the TensorFlow SavedModel backend ---


def test_tf_backend_describes_the_model(tf_standin: Backend, standin_model: StandinModel) -> None:
    assert tf_standin.name == "tf"
    assert tf_standin.input_size == STANDIN_SIZE
    assert tf_standin.labels == standin_labels()
    info = tf_standin.info()
    assert info["model_path"] == str(standin_model.saved_model_dir)
    assert info["input_dtype"] == "float32"
    assert info["outputs"] == "logits (softmax applied)"
    assert info["entry"] == "signature serving_default (inputs -> logits)"


def test_tf_backend_scales_pixels_and_applies_softmax(tf_standin: Backend) -> None:
    images = random_images(4, seed=1)
    probabilities = tf_standin.predict(images)
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (4, STANDIN_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # An independent numpy computation of the stand-in: any other input scaling, or a missing softmax, fails.
    np.testing.assert_allclose(probabilities, standin_reference(images), atol=1e-5)
    assert len(set(np.argmax(probabilities, axis=1))) > 1


def test_tf_backend_does_not_retrace_for_new_batch_sizes(tf_standin: Backend) -> None:
    run = tf_standin._run  # type: ignore[attr-defined]
    for size in (1, 2, 5, 3):
        tf_standin.predict(random_images(size, seed=size))
    assert run.experimental_get_tracing_count() == 1


def test_tf_backend_loads_a_savedmodel_without_signature(tf_standin: Backend, tmp_path: Path) -> None:
    saved_model = build_standin_savedmodel(tmp_path / "callable_only", signature=False)
    labels = write_labels(tmp_path / "labels.txt", standin_labels())
    backend = load_backend("tf", str(saved_model), str(labels), threads=1, inter_op_threads=1)
    assert backend.info()["entry"] == "root __call__"
    images = random_images(3, seed=2)
    np.testing.assert_allclose(backend.predict(images), tf_standin.predict(images), atol=1e-6)


def test_tf_backend_feeds_224_when_the_model_takes_any_size(tf_standin: Backend, tmp_path: Path) -> None:
    saved_model = build_standin_savedmodel(tmp_path / "open_size", open_size=True)
    labels = write_labels(tmp_path / "labels.txt", standin_labels())
    backend = load_backend("tf", str(saved_model), str(labels), threads=1, inter_op_threads=1)
    assert backend.input_size == (224, 224)
    images = random_images(2, seed=6)
    np.testing.assert_allclose(backend.predict(images), tf_standin.predict(images), atol=1e-6)


@pytest.mark.slow  # a fresh Python process importing TensorFlow: about 10 s
def test_tf_backend_sizes_the_thread_pools_before_first_use(standin_model: StandinModel) -> None:
    # A fresh process: in this one the fixtures started TF's runtime already, as a second backend would.
    model, labels = str(standin_model.saved_model_dir), str(standin_model.labels_path)
    script = textwrap.dedent(
        f"""
        import json, tensorflow as tf
        from classifier.backends import load_backend
        info = load_backend("tf", {model!r}, {labels!r}, threads=2, inter_op_threads=3).info()
        print(json.dumps([info["intra_op_threads"], info["inter_op_threads"],
                          tf.config.threading.get_intra_op_parallelism_threads(),
                          tf.config.threading.get_inter_op_parallelism_threads()]))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SERVICE_DIR), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, 3, 2, 3]


# --- the LiteRT backend ---


def test_float_tflite_agrees_with_the_savedmodel(tf_standin: Backend, litert_standin: Backend) -> None:
    assert litert_standin.name == "litert"
    assert litert_standin.input_size == STANDIN_SIZE
    assert litert_standin.info()["input_dtype"] == "float32"
    images = np.concatenate([probe_batch(STANDIN_SIZE), random_images(6, seed=3)])
    np.testing.assert_allclose(litert_standin.predict(images), tf_standin.predict(images), atol=1e-4)


@pytest.mark.parametrize(
    ("dtype", "scale", "zero_point", "expected_offset"),
    [
        ("uint8", 1 / 128, 128, 0),  # the fixture MobileNetV2: [-1, 0.992], MobileNet's x / 127.5 - 1
        ("uint8", 1 / 255, 0, 0),  # [0, 1], a TF Hub-style model quantized after training
        ("int8", 1 / 255, -128, -128),
        ("int8", 1 / 128, 0, -128),
    ],
)
def test_quantized_input_maps_the_pixel_range_onto_the_quantized_range(
    dtype: str, scale: float, zero_point: int, expected_offset: int
) -> None:
    table = pixel_lookup_table(np.dtype(dtype), scale, zero_point)
    assert table.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(table.astype(int), np.arange(256) + expected_offset)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantized_tflite_agrees_with_the_float_model(
    dtype: str, standin_model: StandinModel, tf_standin: Backend, tmp_path: Path
) -> None:
    tflite = convert_to_quantized_tflite(standin_model.saved_model_dir, tmp_path / f"{dtype}.tflite", dtype)
    backend = load_backend(
        "litert", str(tflite), str(standin_model.labels_path), threads=1, inter_op_threads=1
    )
    info = backend.info()
    assert info["input_dtype"] == dtype
    assert info["outputs"] == "logits (softmax applied)"  # quantized logits span negative values
    images = random_images(8, seed=4)
    quantized = backend.predict(images)
    expected = tf_standin.predict(images)
    np.testing.assert_allclose(quantized.sum(axis=1), 1.0, atol=1e-5)
    # Quantization costs some precision; a wrong input mapping (e.g. int8 fed raw pixels) costs far more.
    assert np.abs(quantized - expected).max() < 0.05
    assert (np.argmax(quantized, axis=1) == np.argmax(expected, axis=1)).mean() >= 0.75


def test_imagenet_tflite_reads_raw_pixels_and_quantized_probabilities(litert_imagenet: Backend) -> None:
    info = litert_imagenet.info()
    assert info["input_dtype"] == "uint8"
    assert info["input_scaling"].endswith("= raw pixels")
    assert info["outputs"] == "probabilities"
    assert len(litert_imagenet.labels) == 1001
    assert litert_imagenet.labels[0] == "background"


# The real weights in both runtimes: the uint8 fixture in LiteRT, and its float rebuild in TensorFlow (a
# preprocessing or signature bug in the TF path, e.g. [0, 1] vs [-1, 1] input, fails these).
IMAGENET_BACKENDS = ["litert_imagenet", "tf_imagenet"]


@pytest.mark.parametrize("backend_name", IMAGENET_BACKENDS)
def test_imagenet_classifies_the_parrot_as_a_macaw(
    backend_name: str, imagenet_dir: Path, request: pytest.FixtureRequest
) -> None:
    label, probability = classify(request.getfixturevalue(backend_name), imagenet_dir / "parrot.jpg")
    assert label == "macaw"
    assert probability > 0.5


@pytest.mark.parametrize("backend_name", IMAGENET_BACKENDS)
def test_imagenet_classifies_the_cats_as_cats(
    backend_name: str, imagenet_dir: Path, request: pytest.FixtureRequest
) -> None:
    backend = request.getfixturevalue(backend_name)
    assert classify(backend, imagenet_dir / "cat_720p.jpg")[0] in CAT_LABELS
    assert classify(backend, REPO_IMAGES / "chelsea_640x480.jpg")[0] == "Egyptian cat"


# --- both ---


@pytest.mark.parametrize("backend_name", ["tf_standin", "litert_standin", *IMAGENET_BACKENDS])
def test_a_batch_answers_like_its_images_one_by_one(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    backend: Backend = request.getfixturevalue(backend_name)
    images = random_images(5, seed=5)
    batched = backend.predict(images)
    singles = np.concatenate([backend.predict(image[None]) for image in images])
    np.testing.assert_allclose(batched, singles, atol=1e-6)


@pytest.mark.parametrize("backend_name", ["tf_standin", "litert_standin"])
def test_predict_rejects_batches_of_the_wrong_shape(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    backend: Backend = request.getfixturevalue(backend_name)
    with pytest.raises(ValueError, match="uint8 batch"):
        backend.predict(np.zeros((1, 100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 batch"):
        backend.predict(np.zeros((1, *STANDIN_SIZE, 3), np.float32))


# --- load errors ---


def test_labels_that_do_not_fit_the_model_are_refused(standin_model: StandinModel, tmp_path: Path) -> None:
    labels = write_labels(tmp_path / "labels.txt", standin_labels()[1:])
    with pytest.raises(LabelsError, match=r"1000 labels.*1001 classes.*background"):
        load_backend("tf", str(standin_model.saved_model_dir), str(labels), threads=1, inter_op_threads=1)


def test_unknown_backend_and_missing_models_raise_model_errors(
    standin_model: StandinModel, tmp_path: Path
) -> None:
    labels = str(standin_model.labels_path)
    with pytest.raises(ModelError, match="unknown backend"):
        load_backend("onnx", str(tmp_path), labels, threads=1, inter_op_threads=1)
    with pytest.raises(ModelError, match="not a SavedModel"):
        load_backend("tf", str(tmp_path), labels, threads=1, inter_op_threads=1)
    with pytest.raises(ModelError, match=r"no \.tflite model"):
        load_backend("litert", str(tmp_path / "missing.tflite"), labels, threads=1, inter_op_threads=1)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(ModelError, match="cannot load"):
        load_backend("litert", str(garbage), labels, threads=1, inter_op_threads=1)
