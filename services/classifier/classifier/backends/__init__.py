"""Model backends: one interface, one module per runtime, picked by `load_backend(kind, ...)`.

Each backend takes uint8 RGB batches already resized to its `input_size` and answers float32 class
probabilities. The runtimes are imported lazily so that a LiteRT-only process never pays for importing
TensorFlow (seconds and a few hundred MB per worker).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from classifier.backends.common import ModelError

__all__ = ["BACKEND_KINDS", "Backend", "BackendKind", "ModelError", "load_backend"]


@dataclass(frozen=True)
class BackendKind:
    """One `CLASSIFIER_BACKEND` choice: a runtime and the file of <model_dir> it serves.

    Names are `<runtime>[-<number format>]`: the plain runtime serves the float model, a suffix names the
    quantized file (fetch_model.py's TFLITE_FILES lays them out; a test keeps the two in step)."""

    name: str
    runtime: str
    """`tf` (TensorFlow SavedModel) or `litert` (LiteRT .tflite)."""
    model_file: str
    """Path inside the model directory."""
    description: str


BACKEND_KINDS: dict[str, BackendKind] = {
    kind.name: kind
    for kind in (
        BackendKind("tf", "tf", "saved_model", "TensorFlow SavedModel, float32"),
        BackendKind(
            "litert", "litert", "model.tflite", "LiteRT, float32 .tflite converted from the SavedModel"
        ),
        BackendKind(
            "litert-uint8",
            "litert",
            "model-uint8.tflite",
            "LiteRT, a uint8-quantized .tflite given to the build (offline: the ImageNet fixture)",
        ),
        BackendKind(
            "litert-int8",
            "litert",
            "model-int8.tflite",
            "LiteRT, full-integer int8 per-channel .tflite quantized from the SavedModel at build time",
        ),
    )
}


class Backend(Protocol):
    name: str
    """The `BACKEND_KINDS` name it was loaded as, e.g. `tf` or `litert-int8`."""
    input_size: tuple[int, int]
    """(height, width) of the images `predict` takes."""
    labels: list[str]
    """Index -> label, as long as the model's output."""
    build_check: dict[str, object] | None
    """The image build's check of this file against its source (manifest.json), when there is one."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, H, W, 3] at `input_size` -> float32 probabilities [N, len(labels)]."""
        ...

    def info(self) -> dict[str, object]:
        """Model path, backend, input dtype and quantization, threads: for `/model` and the logs."""
        ...


def load_backend(
    kind: str, model_path: str, labels_path: str, *, threads: int, inter_op_threads: int
) -> Backend:
    """Load a model with the runtime `kind` names; raises ModelError (or LabelsError) with a readable reason.

    `threads` is TF's intra-op pool or LiteRT's interpreter threads; `inter_op_threads` is TF's inter-op pool
    (LiteRT has none). Both are per process: size them so that workers x threads fits the cores.
    """
    spec = BACKEND_KINDS.get(kind)
    if spec is None:
        raise ModelError(f"unknown backend {kind!r}: expected one of {', '.join(BACKEND_KINDS)}")
    backend: Backend
    if spec.runtime == "tf":
        from classifier.backends.tf_savedmodel import TFSavedModelBackend

        backend = TFSavedModelBackend(
            model_path, labels_path, threads=threads, inter_op_threads=inter_op_threads
        )
    else:
        from classifier.backends.litert import LiteRTBackend

        backend = LiteRTBackend(model_path, labels_path, threads=threads)
    backend.name = spec.name
    backend.build_check = build_check(spec, model_path)
    return backend


def build_check(spec: BackendKind, model_path: str) -> dict[str, object] | None:
    """What the image build measured about this file against its source (fetch_model.py's manifest.json
    beside it): int8's agreement with the float model, a dequantized SavedModel's with its .tflite. Shown
    in GET /model, so that nobody reads an int8 replica's speed without its accuracy."""
    manifest_path = Path(model_path).parent / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    if spec.name == "litert-int8":
        return (manifest.get("int8") or {}).get("agreement")
    if spec.runtime == "tf" or spec.name == "litert":  # both serve the rebuilt float weights
        return (manifest.get("dequantized") or {}).get("top1_check")
    return None
