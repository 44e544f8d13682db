"""A deterministic stand-in for a model backend, so service tests run without TensorFlow or LiteRT.

Each image's answer depends only on that image (mean of each colour channel), never on the rest of the
batch, like a real model: batched and unbatched answers must then be equal to the last bit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

LABELS = [f"class_{i}" for i in range(10)]


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        input_size: tuple[int, int] = (32, 32),
        *,
        delay_s: float = 0.0,
        fail_if: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
        self.input_size = input_size
        self.labels = list(LABELS)
        self.delay_s = delay_s
        self.fail_if = fail_if
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()
        self._weights = np.random.default_rng(7).normal(size=(3, len(LABELS))).astype(np.float32)
        self._busy = threading.Lock()
        self.overlapping_calls = 0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if not self._busy.acquire(blocking=False):
            # The service promises one model call at a time per process; count any breach for the tests.
            self.overlapping_calls += 1
            self._busy.acquire()
        try:
            self.threads.add(threading.current_thread().name)
            assert batch.dtype == np.uint8 and batch.shape[1:] == (*self.input_size, 3), batch.shape
            self.batch_sizes.append(len(batch))
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.fail_if is not None and self.fail_if(batch):
                raise RuntimeError("stand-in model failure")
            # Row by row, so that a row's float arithmetic cannot depend on the batch it sits in.
            rows = []
            for image in batch:
                means = image.reshape(-1, 3).mean(axis=0, dtype=np.float64).astype(np.float32) / 255.0
                logits = means @ self._weights * 8.0
                exp = np.exp(logits - logits.max())
                rows.append(exp / exp.sum())
            return np.stack(rows).astype(np.float32)
        finally:
            self._busy.release()

    def info(self) -> dict[str, object]:
        return {"backend": self.name, "input_size": list(self.input_size), "num_classes": len(self.labels)}


class RecordingLoader:
    """A `backend_loader` for create_app: hands out one backend and records how it was asked for."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.calls: list[dict[str, object]] = []

    def __call__(
        self, kind: str, model_path: str, labels_path: str, *, threads: int, inter_op_threads: int
    ) -> FakeBackend:
        self.calls.append(
            {
                "kind": kind,
                "model_path": model_path,
                "labels_path": labels_path,
                "threads": threads,
                "inter_op_threads": inter_op_threads,
                "thread": threading.current_thread().name,
            }
        )
        return self.backend
