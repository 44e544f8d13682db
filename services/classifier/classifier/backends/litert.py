"""LiteRT backend for `.tflite` models (the `ai-edge-litert` package; `tf.lite.Interpreter` is deprecated).

Input scaling, by the model's input tensor:
- float32: pixels / 255 -> [0, 1], the TF Hub convention, which a float32 conversion of a TF Hub model keeps.
- uint8 / int8 with (scale, zero_point): a quantized model's input quantization is calibrated on the inputs
  it was trained with, so the quantized type's full range [qmin, qmax] stands for the model's preprocessed
  pixel range, and pixel 0..255 maps linearly onto it: real = scale * (q - zero_point), with real(0) = the
  low end and real(255) = the high end. Worked through, that is q = qmin + pixel whatever the scale and
  zero point, e.g. the fixture MobileNetV2 (uint8, scale 1/128, zero point 128, i.e. [-1, 0.992], which is
  MobileNet's own x / 127.5 - 1) takes raw pixels, and an int8 model takes pixel - 128. The mapping is
  computed from the tensor's parameters into a 256-entry table, not hard-coded.
Outputs are dequantized with their own (scale, zero_point); softmax is applied only when the model answers
logits: a quantized output is a probability when its representable range is [0, 1], a float output when
the model's answers to fixed probe images sum to 1. Quantized probabilities are not renormalised: each
one is the model's own value to within a quantization step, though small classes round to 0.

Batches run image by image on one interpreter. Measured on this machine (2 vCPU AMD EPYC, load < 1,
float32 MobileNetV2 1.0/224 with XNNPACK, median ms per image, batched = resize_tensor_input on a per-N
interpreter vs loop = N invokes of a batch-1 interpreter):
    threads=1: N=1 10.1 vs 10.3, N=4 10.5 vs 10.1, N=8 11.4 vs 10.0
    threads=2: N=1 5.4 vs 5.5,   N=4 5.2 vs 5.6,   N=8 6.1 vs 6.4
(an earlier run on the busy machine gave the same picture). Batching the interpreter saves nothing with one
thread, the default, and at most 6 % with two; it costs one tensor arena per batch size, and models with
a fixed-shape Reshape (the fixture quantized MobileNetV2) refuse resizing altogether. So: the loop.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from classifier.backends.common import (
    ModelError,
    are_probabilities,
    check_batch,
    probe_batch,
    quantized_range_is_probability,
    softmax,
)
from classifier.labels import check_labels_fit, load_labels


def pixel_lookup_table(dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Pixel value 0..255 -> the quantized input value standing for it (see the module docstring)."""
    limits = np.iinfo(dtype)
    low = scale * (limits.min - zero_point)
    high = scale * (limits.max - zero_point)
    real = low + np.arange(256, dtype=np.float64) * (high - low) / 255.0
    quantized = np.round(real / scale + zero_point)
    return np.clip(quantized, limits.min, limits.max).astype(dtype)


class LiteRTBackend:
    name = "litert"
    build_check: dict[str, Any] | None = None

    def __init__(self, model_path: str, labels_path: str, *, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"no .tflite model at {path}")
        try:
            # 0 or less leaves the choice to LiteRT (its default is one thread).
            num_threads = threads if threads > 0 else None
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load the LiteRT model at {path}: {exc}") from exc
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"expected one input and one output, the model has {len(inputs)} and {len(outputs)}"
            )
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(int(d) for d in self._input["shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(f"the model's input shape {list(shape)} is not an image batch [N, H, W, 3]")
        if shape[0] != 1:
            self._interpreter.resize_tensor_input(self._input["index"], [1, *shape[1:]])
            self._interpreter.allocate_tensors()
        self.input_size = (shape[1], shape[2])
        self._threads = threads
        self.model_path = str(path)
        self._lock = threading.Lock()  # one interpreter: set_tensor/invoke/get_tensor must not interleave

        self._input_dtype = np.dtype(self._input["dtype"])
        in_scale, in_zero = self._input["quantization"]
        if self._input_dtype == np.float32:
            self._lut: np.ndarray | None = None
            self._input_scaling = "pixels / 255 -> [0, 1]"
        elif self._input_dtype in (np.uint8, np.int8) and in_scale > 0:
            lut = pixel_lookup_table(self._input_dtype, in_scale, in_zero)
            identity = lut.dtype == np.uint8 and np.array_equal(lut, np.arange(256))
            self._lut = None if identity else lut
            self._input_scaling = f"quantized scale={in_scale:g} zero_point={in_zero}: q = lut[pixel]"
            if identity:
                self._input_scaling += " = raw pixels"
        else:
            raise ModelError(
                f"unsupported input: dtype {self._input_dtype.name}, quantization {in_scale, in_zero}"
            )

        self._output_dtype = np.dtype(self._output["dtype"])
        out_scale, out_zero = self._output["quantization"]
        self._dequantize = (float(out_scale), int(out_zero)) if out_scale > 0 else None

        probe = self._infer(probe_batch(self.input_size))
        if self._dequantize is not None:
            self._outputs_probabilities = quantized_range_is_probability(
                self._output_dtype, *self._dequantize
            )
        else:
            self._outputs_probabilities = are_probabilities(probe)
        self.labels = load_labels(labels_path)
        check_labels_fit(self.labels, probe.shape[1], labels_path)

    def _to_model_input(self, batch: np.ndarray) -> np.ndarray:
        if self._input_dtype == np.float32:
            return np.multiply(batch, np.float32(1 / 255), dtype=np.float32)
        if self._lut is not None:
            return self._lut[batch]
        return batch

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        model_input = self._to_model_input(batch)
        rows: list[np.ndarray] = []
        input_index, output_index = self._input["index"], self._output["index"]
        with self._lock:
            for image in model_input:
                self._interpreter.set_tensor(input_index, image[None])
                self._interpreter.invoke()
                # get_tensor copies; the interpreter's buffer is reused by the next invoke.
                rows.append(self._interpreter.get_tensor(output_index).reshape(-1))
        outputs = np.stack(rows)
        if self._dequantize is not None:
            scale, zero_point = self._dequantize
            return ((outputs.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)
        return outputs.astype(np.float32, copy=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input_size)
        outputs = self._infer(batch)
        return outputs if self._outputs_probabilities else softmax(outputs)

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "build_check": self.build_check,
            "model_path": self.model_path,
            "input_size": list(self.input_size),
            "input_dtype": self._input_dtype.name,
            "input_scaling": self._input_scaling,
            "output_dtype": self._output_dtype.name,
            "output_quantization": list(self._dequantize) if self._dequantize else None,
            "outputs": "probabilities" if self._outputs_probabilities else "logits (softmax applied)",
            "num_classes": len(self.labels),
            "threads": self._threads,
            "batching": "one invoke per image",
        }
