"""Small models made by the tests, and the real ImageNet fixtures when they are present.

The stand-in has the TF Hub MobileNetV2 classification model's interface: float32 [None, 224, 224, 3] in
[0, 1] -> 1001 logits, through a `serving_default` signature (input `inputs`, output `logits`) and the
root object's `__call__`, with fixed pseudo-random weights. Its 1001 labels start with "background". It is
tiny (average pooling to 8x8x3, one dense layer) so that tests stay fast, but every pixel region moves the
logits, so different images get different answers.

Use from a test module (pytest finds fixtures by name in the module, hence the import and the noqa):

    from tests.classifier.model_fixtures import standin_model_fixture  # noqa: F401

    def test_something(standin_model): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from classifier.backends import Backend, load_backend

STANDIN_SIZE = (224, 224)
STANDIN_CLASSES = 1001
_POOL = 28  # 224 / 28 = 8 cells per side

IMAGENET_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "imagenet"
IMAGENET_TFLITE = IMAGENET_DIR / "mobilenet_v2_1.0_224_quant.tflite"
IMAGENET_LABELS = IMAGENET_DIR / "imagenet_labels.txt"


@dataclass(frozen=True)
class StandinModel:
    saved_model_dir: Path
    labels_path: Path


def standin_labels() -> list[str]:
    return ["background", *(f"standin class {i}" for i in range(1, STANDIN_CLASSES))]


def standin_parameters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The stand-in's dense weights [192, 1001] and bias [1001]."""
    rng = np.random.default_rng(seed)
    features = (STANDIN_SIZE[0] // _POOL) * (STANDIN_SIZE[1] // _POOL) * 3
    # Features are pooled pixels centred on 0 (about -0.5..0.5); weights of this size spread the logits over
    # a few units, so the softmax is neither flat nor one-hot.
    weights = rng.normal(0.0, 0.5, (features, STANDIN_CLASSES)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, STANDIN_CLASSES).astype(np.float32)
    return weights, bias


def standin_reference(batch: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the stand-in must answer for a uint8 batch, in numpy: pixels / 255, the model, softmax."""
    weights, bias = standin_parameters(seed)
    pixels = batch.astype(np.float64) / 255.0
    cells = (STANDIN_SIZE[0] // _POOL, _POOL, STANDIN_SIZE[1] // _POOL, _POOL, 3)
    pooled = pixels.reshape(len(batch), *cells).mean(axis=(2, 4))
    logits = (pooled.reshape(len(batch), -1) - 0.5) @ weights + bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def build_standin_savedmodel(
    directory: Path, *, seed: int = 0, signature: bool = True, open_size: bool = False
) -> Path:
    """Save the stand-in classifier to `directory`; without `signature` it has only the root `__call__`;
    with `open_size` its input signature leaves height and width open (it still needs 224 x 224)."""
    import tensorflow as tf

    from classifier.backends.tf_savedmodel import configure_threads

    # TF's thread pools can be sized only before its first op: size them as the tests' backends ask (1, 1).
    configure_threads(1, 1)
    weights, bias = standin_parameters(seed)
    features = weights.shape[0]
    input_shape = [None, None, None, 3] if open_size else [None, *STANDIN_SIZE, 3]

    class Standin(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(weights, trainable=False)
            self.bias = tf.Variable(bias, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32)])
        def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
            pooled = tf.nn.avg_pool2d(inputs, ksize=_POOL, strides=_POOL, padding="VALID")
            flat = tf.reshape(pooled, [-1, features]) - 0.5
            return tf.matmul(flat, self.weights) + self.bias

    module = Standin()

    @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32, name="inputs")])
    def serving(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": module(inputs)}

    signatures = {"serving_default": serving} if signature else {}
    tf.saved_model.save(module, str(directory), signatures=signatures)
    return directory


def write_labels(path: Path, labels: list[str]) -> Path:
    path.write_text("\n".join(labels) + "\n", encoding="utf-8")
    return path


def convert_to_float_tflite(saved_model_dir: Path, destination: Path) -> Path:
    """The float32 conversion exactly as the image build does it (fetch_model.convert_to_tflite)."""
    import fetch_model

    return fetch_model.convert_to_tflite(saved_model_dir, destination)


def convert_to_quantized_tflite(saved_model_dir: Path, destination: Path, dtype: str) -> Path:
    """Full-integer quantized conversion with `dtype` ("uint8" or "int8") input and output tensors.

    Calibrated on images covering the whole [0, 1] input range (black and white included), so the input
    quantization's range is [0, 1], as for a TF Hub float model quantized after training.
    """
    import tensorflow as tf

    rng = np.random.default_rng(1)

    def representative() -> Iterator[list[np.ndarray]]:
        yield [np.zeros((1, *STANDIN_SIZE, 3), np.float32)]
        yield [np.ones((1, *STANDIN_SIZE, 3), np.float32)]
        for _ in range(30):
            yield [rng.random((1, *STANDIN_SIZE, 3), dtype=np.float32)]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, dtype)
    converter.inference_output_type = getattr(tf, dtype)
    destination.write_bytes(converter.convert())
    return destination


@pytest.fixture(scope="session", name="standin_model")
def standin_model_fixture(tmp_path_factory: pytest.TempPathFactory) -> StandinModel:
    root = tmp_path_factory.mktemp("standin")
    return StandinModel(
        saved_model_dir=build_standin_savedmodel(root / "saved_model"),
        labels_path=write_labels(root / "labels.txt", standin_labels()),
    )


@pytest.fixture(scope="session", name="standin_tflite")
def standin_tflite_fixture(standin_model: StandinModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in converted to a float32 .tflite (same labels as `standin_model`)."""
    return convert_to_float_tflite(
        standin_model.saved_model_dir, tmp_path_factory.mktemp("tflite") / "model.tflite"
    )


@pytest.fixture(scope="session", name="imagenet_dir")
def imagenet_dir_fixture() -> Path:
    """../shared/fixtures/imagenet (real MobileNetV2 .tflite, labels, photos); skips when absent."""
    if not IMAGENET_TFLITE.is_file():
        pytest.skip(
            f"real ImageNet fixtures not found at {IMAGENET_DIR.resolve()} (only on the lab's machines)"
        )
    return IMAGENET_DIR.resolve()


@pytest.fixture(scope="session", name="litert_imagenet")
def litert_imagenet_fixture(imagenet_dir: Path) -> Backend:
    """The real ImageNet MobileNetV2 (quantized .tflite) in the LiteRT backend, loaded once per session."""
    return load_backend(
        "litert-uint8",
        str(imagenet_dir / "mobilenet_v2_1.0_224_quant.tflite"),
        str(imagenet_dir / "imagenet_labels.txt"),
        threads=1,
        inter_op_threads=1,
    )


@pytest.fixture(scope="session", name="tf_imagenet")
def tf_imagenet_fixture(imagenet_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """The same real weights in the TF backend: the fixture .tflite rebuilt as a float32 SavedModel, as the
    offline image build does (modelbuild.dequantize; its own checks must pass)."""
    from modelbuild.dequantize import dequantize

    saved_model = tmp_path_factory.mktemp("dequantized") / "saved_model"
    conversion = dequantize(imagenet_dir / "mobilenet_v2_1.0_224_quant.tflite", saved_model, [])
    assert conversion.passed, conversion.record()
    return load_backend(
        "tf", str(saved_model), str(imagenet_dir / "imagenet_labels.txt"), threads=1, inter_op_threads=1
    )
