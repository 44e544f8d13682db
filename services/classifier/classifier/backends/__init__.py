"""Model backends: one interface, one module per runtime, picked by `load_backend(kind, ...)`.

Each backend takes uint8 RGB batches already resized to its `input_size` and answers float32 class
probabilities. The runtimes are imported lazily so that a LiteRT-only process never pays for importing
TensorFlow (seconds and a few hundred MB per worker).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from classifier.backends.common import ModelError

__all__ = ["BACKEND_KINDS", "Backend", "ModelError", "load_backend"]

BACKEND_KINDS = ("tf", "litert")


class Backend(Protocol):
    name: str
    """`tf` or `litert`."""
    input_size: tuple[int, int]
    """(height, width) of the images `predict` takes."""
    labels: list[str]
    """Index -> label, as long as the model's output."""

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
    if kind == "tf":
        from classifier.backends.tf_savedmodel import TFSavedModelBackend

        return TFSavedModelBackend(
            model_path, labels_path, threads=threads, inter_op_threads=inter_op_threads
        )
    if kind == "litert":
        from classifier.backends.litert import LiteRTBackend

        return LiteRTBackend(model_path, labels_path, threads=threads)
    raise ModelError(f"unknown backend {kind!r}: expected one of {', '.join(BACKEND_KINDS)}")
