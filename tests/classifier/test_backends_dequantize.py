"""modelbuild.dequantize: a quantized .tflite rebuilt as a float SavedModel, checked against the interpreter.

The test builds its own tiny full-integer model (per-channel int8 weights, a MEAN, a SOFTMAX followed by the
QUANTIZE that a uint8 output adds) rather than relying on the ImageNet fixture, so it runs on any clone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modelbuild.dequantize import (
    UnsupportedModel,
    compare_answers,
    dequantize,
    read_graph,
    savedmodel_probabilities,
)
from modelbuild.dequantize import tflite_probabilities as tflite_answers

pytestmark = pytest.mark.slow
SIZE = 32
CLASSES = 6


def _quantized_tflite(path: Path, body: Callable[[Any], Any]) -> Path:
    """A full-integer int8 .tflite of `body` (float [N, 32, 32, 3] in [0, 1] -> class scores), with uint8
    input and output: the converter then ends the graph with a QUANTIZE (int8 -> uint8)."""
    import tensorflow as tf

    from classifier.backends.tf_savedmodel import configure_threads

    configure_threads(1, 1)
    function = tf.function(body, input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
    rng = np.random.default_rng(3)

    def representative() -> Iterator[list[np.ndarray]]:
        yield [np.zeros((1, SIZE, SIZE, 3), np.float32)]
        yield [np.ones((1, SIZE, SIZE, 3), np.float32)]
        for _ in range(40):
            yield [rng.random((1, SIZE, SIZE, 3), dtype=np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path.write_bytes(converter.convert())
    return path


def _weights(seed: int = 0) -> dict[str, Any]:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    # Output channels with very different ranges: per-channel scales differ, a per-tensor one would not fit.
    conv = rng.normal(0, 0.4, (3, 3, 3, 8)) * np.array([0.1, 0.5, 1, 2, 0.2, 1.5, 0.7, 3])
    return {
        "conv": tf.constant(conv, tf.float32),
        "conv_b": tf.constant(rng.normal(0, 0.1, 8), tf.float32),
        "dw": tf.constant(rng.normal(0, 0.5, (3, 3, 8, 1)), tf.float32),
        "dw_b": tf.constant(rng.normal(0, 0.1, 8), tf.float32),
        "head": tf.constant(rng.normal(0, 0.3, (1, 1, 8, CLASSES)), tf.float32),
        "head_b": tf.constant(rng.normal(0, 0.2, CLASSES), tf.float32),
    }


def mobilenet_like(images: Any) -> Any:
    """CONV_2D + RELU6, DEPTHWISE_CONV_2D, ADD (residual), AVERAGE_POOL_2D, MEAN, a 1x1 CONV_2D head,
    RESHAPE and SOFTMAX: the ops of the MobileNet family."""
    import tensorflow as tf

    w = _weights()
    x = tf.nn.relu6(tf.nn.conv2d(images, w["conv"], 2, "SAME") + w["conv_b"])
    y = tf.nn.depthwise_conv2d(x, w["dw"], [1, 1, 1, 1], "SAME") + w["dw_b"]
    x = tf.nn.avg_pool2d(x + y, 2, 2, "VALID")
    pooled = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    logits = tf.nn.conv2d(pooled, w["head"], 1, "VALID") + w["head_b"]
    return tf.nn.softmax(tf.reshape(logits, [1, CLASSES]))


def with_max_pool(images: Any) -> Any:
    import tensorflow as tf

    w = _weights()
    x = tf.nn.max_pool2d(tf.nn.conv2d(images, w["conv"], 2, "SAME"), 2, 2, "VALID")
    logits = tf.nn.conv2d(tf.reduce_mean(x, axis=[1, 2], keepdims=True), w["head"], 1, "VALID")
    return tf.nn.softmax(tf.reshape(logits, [1, CLASSES]))


def _photos(directory: Path, count: int = 5) -> list[Path]:
    """Smooth random images (blocks of colour), saved as PNGs: the probe photos."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for index in range(count):
        blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = np.kron(blocks, np.ones((SIZE // 4, SIZE // 4, 1), np.uint8))
        path = directory / f"photo{index}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _quantized_tflite(tmp_path_factory.mktemp("tiny") / "tiny.tflite", mobilenet_like)


def test_the_tiny_model_has_what_the_rebuild_must_handle(tiny_int8: Path) -> None:
    graph = read_graph(tiny_int8.read_bytes())
    names = [op.name for op in graph.ops]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "MEAN", "SOFTMAX"} <= set(names)
    assert names[-2:] == ["SOFTMAX", "QUANTIZE"], names
    conv = next(op for op in graph.ops if op.name == "CONV_2D")
    depthwise = next(op for op in graph.ops if op.name == "DEPTHWISE_CONV_2D")
    conv_weights, dw_weights = graph.tensors[conv.inputs[1]], graph.tensors[depthwise.inputs[1]]
    assert conv_weights.dtype == np.int8 and conv_weights.scale is not None and conv_weights.scale.size == 8
    assert (conv_weights.axis, dw_weights.axis) == (0, 3)  # OHWI vs [1, kh, kw, C*M]
    # The logits are the softmax's input, not the QUANTIZE's output.
    softmax = graph.ops[-2]
    assert graph.logits == softmax.inputs[0]


def test_the_rebuilt_model_answers_like_the_interpreter(tiny_int8: Path, tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    conversion = dequantize(tiny_int8, tmp_path / "saved_model", photos)
    record = conversion.record()
    assert record["per_op_check"]["passed"], record
    assert record["per_op_check"]["max_steps"] <= 1.0
    assert record["top1_check"]["top1_agree"] == len(photos)
    assert conversion.passed

    # End to end, independently of the per-op check: the SavedModel from disk vs the .tflite.
    from modelbuild.images import load_batch

    pixels = load_batch(photos, (SIZE, SIZE))
    ours = savedmodel_probabilities(tmp_path / "saved_model", pixels)
    theirs = tflite_answers(tiny_int8.read_bytes(), pixels)
    # The .tflite rounds each layer to its step (its logits by about 0.03 here, its softmax by 1/256):
    # a few steps of accumulated rounding at most, far below a wrong layout (which moves p by 0.1 and more).
    np.testing.assert_allclose(ours, theirs, atol=0.03)
    # Top-1 as the build checks it: classes within the uint8 output's step of its maximum are tied there.
    assert compare_answers(theirs, ours, step=1 / 256)["top1_agree"] == len(photos)


def test_the_rebuilt_model_takes_any_batch_size(tiny_int8: Path, tmp_path: Path) -> None:
    dequantize(tiny_int8, tmp_path / "saved_model", [])
    pixels = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    assert savedmodel_probabilities(tmp_path / "saved_model", pixels).shape == (5, CLASSES)


def test_an_unsupported_op_is_refused_by_name(tmp_path: Path) -> None:
    model = _quantized_tflite(tmp_path / "maxpool.tflite", with_max_pool)
    with pytest.raises(UnsupportedModel, match="op MAX_POOL_2D is not supported"):
        dequantize(model, tmp_path / "saved_model", [])
    assert not (tmp_path / "saved_model").exists()


def test_fetch_model_refuses_it_with_the_op_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fetch_model

    model = _quantized_tflite(tmp_path / "maxpool.tflite", with_max_pool)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"c{i}\n" for i in range(CLASSES)))
    argv = ["--source", f"dequantize:{model}", "--labels", str(labels), "--out", str(tmp_path / "out")]
    assert fetch_model.main(argv) == 1
    assert "op MAX_POOL_2D is not supported" in capsys.readouterr().err
