"""Full-integer int8 post-training quantization of a float SavedModel, calibrated on a folder of images.

TensorFlow's converter with the default optimizations, a representative dataset and TFLITE_BUILTINS_INT8
quantizes weights per output channel and activations per tensor, and makes the model's input and output
int8 too. The input is int8 over the float model's [0, 1] input range, so the LiteRT backend feeds it
q = -128 + pixel (its general rule, classifier/backends/litert.py); the output is the softmax of the
SavedModel's logits (added here before quantizing) so that the file answers probabilities as the uint8
fixture does.

Why int8 per-channel and not the uint8 per-tensor layout: XNNPACK's int8 kernels use AVX-512 VNNI on these
CPUs (5.6 ms per image vs 12.0 ms float32 and 9.3 ms for the uint8 fixture, measured in issue 24).

The build checks the int8 file against its float model on probe photos and fails below AGREEMENT: one
definition of the threshold, recorded in the manifest with the measured numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelbuild.images import IMAGE_SUFFIXES, ImagesError, calibration_images, files_digest, load_batch


@dataclass(frozen=True)
class Agreement:
    """What an int8 model must keep of its float model's answers on the probe photos."""

    max_top1_misses: int = 1
    """Photos whose top-1 may differ from the float model's (count)."""
    max_mean_abs_diff: float = 0.05
    """Mean |p_int8 - p_float| over photos and classes' top-5 of the float model."""


AGREEMENT = Agreement()
NO_CALIBRATION = (
    "int8 quantization needs calibration images and the calibration folder has none "
    f"(MODEL_CALIBRATION_DIR: {', '.join(IMAGE_SUFFIXES)} files like the traffic you serve)"
)
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
CALIBRATION_INPUTS = 128
"""Representative inputs made from the calibration photos (crops and flips): a few hundred is what TF's
post-training quantization guide asks for (100-500); each costs one float inference at build time."""


def _float_probabilities(saved_model_dir: Path) -> Any:
    """The SavedModel as a tf.function float [N, H, W, 3] in [0, 1] -> probabilities, the loaded object
    (kept alive for the converter) and its input size."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures["serving_default"]
    _, kwargs = signature.structured_input_signature
    ((input_name, spec),) = kwargs.items()
    output_name = next(iter(signature.structured_outputs))
    height, width = spec.shape[1] or 224, spec.shape[2] or 224
    probe = signature(**{input_name: tf.fill([1, height, width, 3], 0.5)})[output_name].numpy()
    # A logit head gets its softmax here, decided once (a tf.cond would add subgraphs to the .tflite):
    # int8 probabilities, as the quantized fixture answers.
    head_is_softmax = bool(probe.min() >= 0 and abs(probe.sum() - 1) < 1e-3)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="inputs")])
    def probabilities(inputs: Any) -> Any:
        scores = signature(**{input_name: inputs})[output_name]
        return scores if head_is_softmax else tf.nn.softmax(scores)

    return loaded, probabilities, (int(height), int(width))


def quantize_int8(saved_model_dir: Path, destination: Path, calibration: list[Path]) -> dict[str, Any]:
    """Write the int8 .tflite; returns what the manifest records about its calibration."""
    import tensorflow as tf

    if not calibration:
        raise ImagesError(NO_CALIBRATION)
    started = time.monotonic()
    _loaded, probabilities, size = _float_probabilities(saved_model_dir)

    def representative() -> Iterator[list[np.ndarray]]:
        for image in calibration_images(calibration, size, CALIBRATION_INPUTS):
            yield [(image[None].astype(np.float32) / 255.0).astype(np.float32)]

    concrete = probabilities.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], _loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    destination.write_bytes(converter.convert())
    return {
        "calibration": {
            "photos": len(calibration),
            "inputs": CALIBRATION_INPUTS,
            "sha256": files_digest(calibration),
        },
        "seconds": round(time.monotonic() - started, 1),
    }


def weight_quantization(tflite: Path) -> dict[str, Any]:
    """How the file's convolution weights are quantized (type, per-channel), read from the flatbuffer."""
    from modelbuild.dequantize import _enum_names, _schema

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(tflite.read_bytes(), 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    graph = model.subgraphs[0]
    weights = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) in CONV_OPS:
            weights.append(graph.tensors[op.inputs[1]])
    inputs, outputs = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    return {
        "input_dtype": type_names[inputs.type].lower(),
        "output_dtype": type_names[outputs.type].lower(),
        "weight_dtypes": sorted({type_names[w.type].lower() for w in weights}),
        "per_channel": bool(weights)
        and all(w.quantization is not None and len(w.quantization.scale) > 1 for w in weights),
        "conv_layers": len(weights),
    }


def agreement(tflite: Path, saved_model_dir: Path, photos: list[Path]) -> dict[str, Any]:
    """Top-1 agreement and |delta p| of the int8 file with its float model on the probe photos, and
    whether AGREEMENT holds."""
    from modelbuild.dequantize import tflite_probabilities

    if not photos:
        raise ImagesError("the int8 check needs probe photos and the folder has none")
    _loaded, probabilities, size = _float_probabilities(saved_model_dir)
    pixels = load_batch(photos, size)
    reference = probabilities(np.asarray(pixels, np.float32) / 255.0).numpy()
    quantized = tflite_probabilities(tflite.read_bytes(), pixels)
    misses = int((reference.argmax(axis=1) != quantized.argmax(axis=1)).sum())
    top5 = np.argsort(-reference, axis=1)[:, :5]
    rows = np.arange(len(reference))[:, None]
    diff_top5 = np.abs(reference[rows, top5] - quantized[rows, top5])
    mean_diff = float(diff_top5.mean())
    passed = misses <= AGREEMENT.max_top1_misses and mean_diff <= AGREEMENT.max_mean_abs_diff
    return {
        "photos": len(photos),
        "top1_agree": len(photos) - misses,
        "mean_abs_diff_top5": round(mean_diff, 4),
        "max_abs_diff": round(float(np.abs(reference - quantized).max()), 4),
        "threshold": asdict(AGREEMENT),
        "passed": passed,
    }
