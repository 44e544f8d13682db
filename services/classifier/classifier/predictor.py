"""The hot path of one prediction: decode + model call off the event loop -> top-k answer.

Nothing here runs model or image code on the event loop; the model is only ever called from the one thread
that owns it (a model object is never called from two threads at once).
- Batching on: decode in a small pool of threads, then the batcher collects images for the inference thread.
- Batching off: one hand-off per request. The inference thread decodes the image and calls the model right
  after, as the bare backend loop does. A decode pool gains nothing here: images queue for the one model
  thread anyway, and the second hop (a thread wake-up and GIL hand-over each way, plus the batcher task) cost
  CPU on every request (bench/README.md, "Where a request's CPU goes").
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import numpy as np

from classifier.batching import Batcher, BatcherClosed
from classifier.errors import ApiError
from classifier.metrics import Metrics
from classifier.preprocess import ImageError, decode_image
from classifier.timing import Timings

if TYPE_CHECKING:
    from classifier.backends import Backend

log = logging.getLogger(__name__)

# preprocess.ImageError codes whose status is not the default 422 (not_an_image, truncated_image,
# corrupt_image); errors.py has the whole table.
_IMAGE_ERROR_STATUS = {"empty": 400, "image_too_large": 413, "unsupported_type": 415}


def image_error_status(code: str) -> int:
    return _IMAGE_ERROR_STATUS.get(code, 422)


class _DecodeFailed(Exception):
    """Carries a decode error out of the inference thread, so that it is told apart from a model failure."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Predictor:
    def __init__(
        self,
        backend: Backend,
        *,
        top_k: int,
        max_batch_size: int,
        max_batch_delay_ms: float,
        infer_executor: Executor,
        decode_executor: Executor,
        metrics: Metrics,
    ) -> None:
        self.backend = backend
        self.input_size: tuple[int, int] = (int(backend.input_size[0]), int(backend.input_size[1]))
        self.labels = list(backend.labels)
        self.top_k = min(top_k, len(self.labels))
        self._infer_executor = infer_executor
        self._decode_executor = decode_executor
        self._metrics = metrics
        self.one_hop = max_batch_size == 1
        """Batching off: decode and model call in one job on the inference thread."""
        self._in_flight = 0
        self.batcher = Batcher(
            backend.predict,
            infer_executor,
            max_batch_size=max_batch_size,
            max_delay_s=max_batch_delay_ms / 1000.0,
            observer=metrics,
        )

    # --- life cycle ---
    async def warm_up(self, rounds: int = 3) -> None:
        """First calls are slow (graph tracing, XNNPACK packing, Pillow plugins): pay before readiness."""
        loop = asyncio.get_running_loop()
        sizes = sorted({1, self.batcher.max_batch_size})
        await loop.run_in_executor(self._infer_executor, self._warm_model, sizes, rounds)
        blank = _blank_jpeg(self.input_size)
        decoder = self._infer_executor if self.one_hop else self._decode_executor
        await loop.run_in_executor(decoder, decode_image, blank, self.input_size)

    def _warm_model(self, sizes: list[int], rounds: int) -> None:
        height, width = self.input_size
        for size in sizes:
            batch = np.zeros((size, height, width, 3), dtype=np.uint8)
            for _ in range(rounds):
                probs = np.asarray(self.backend.predict(batch))
            if probs.shape != (size, len(self.labels)):
                raise RuntimeError(
                    f"backend answered shape {probs.shape} for a batch of {size}, "
                    f"expected ({size}, {len(self.labels)})"
                )

    def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()

    # --- per request ---
    async def predict(self, data: bytes, timings: Timings) -> dict[str, object]:
        if self.one_hop:
            return await self._predict_one_hop(data, timings)
        image = await self.decode(data, timings)
        try:
            result = await self.batcher.submit(image)
        except BatcherClosed as exc:
            # Shutting down: a 503 lets nginx retry the request on another replica.
            raise ApiError(503, "not_ready", str(exc)) from None
        timings.add("queue", result.queue_s)
        timings.add("infer", result.infer_s)
        return self.answer(result.probs, result.batch_size)

    async def _predict_one_hop(self, data: bytes, timings: Timings) -> dict[str, object]:
        if self.batcher.closed:
            raise ApiError(503, "not_ready", "the service is shutting down")
        loop = asyncio.get_running_loop()
        # Requests waiting for the inference thread: all in flight here but the one it is running.
        self._in_flight += 1
        self._metrics.queue_depth(self._in_flight - 1)
        try:
            probs, queue_s, decode_s, infer_s = await loop.run_in_executor(
                self._infer_executor,
                _decode_and_predict,
                self.backend.predict,
                data,
                self.input_size,
                time.perf_counter(),
            )
        except _DecodeFailed as failed:
            raise _decode_error(failed.error) from None
        finally:
            self._in_flight -= 1
            self._metrics.queue_depth(max(0, self._in_flight - 1))
        self._metrics.batch_done(1, infer_s)
        timings.add("queue", queue_s)
        timings.add("decode", decode_s)
        timings.add("infer", infer_s)
        return self.answer(probs, 1)

    async def decode(self, data: bytes, timings: Timings) -> np.ndarray:
        loop = asyncio.get_running_loop()
        try:
            image, seconds = await loop.run_in_executor(
                self._decode_executor, _timed_decode, data, self.input_size
            )
        except Exception as exc:
            raise _decode_error(exc) from None
        timings.add("decode", seconds)
        return image

    def answer(self, probs: np.ndarray, batch_size: int) -> dict[str, object]:
        k = self.top_k
        top = np.argpartition(probs, -k)[-k:]
        # Stable order for equal probabilities (lower class index first), so answers are reproducible.
        top = top[np.lexsort((top, -probs[top]))]
        top_k = [{"label": self.labels[i], "probability": float(probs[i])} for i in top]
        return {
            "predicted_label": top_k[0]["label"],
            "probability": top_k[0]["probability"],
            "top_k": top_k,
            "backend": self.backend.name,
            "batch_size": batch_size,
        }


def _decode_error(exc: Exception) -> ApiError:
    if isinstance(exc, ImageError):
        return ApiError(image_error_status(exc.code), exc.code, exc.detail)
    # Decoders raise many kinds of errors on hostile input; it is still the input's fault, and a 5xx would
    # make nginx retry the same bad bytes on every replica.
    log.warning("decode failed outside ImageError: %r", exc)
    return ApiError(422, "invalid_image", f"cannot decode the image: {type(exc).__name__}")


def _decode_and_predict(
    predict: Callable[[np.ndarray], np.ndarray], data: bytes, size: tuple[int, int], enqueued: float
) -> tuple[np.ndarray, float, float, float]:
    """Runs in the inference thread: (probabilities, queue, decode and infer seconds) of one image."""
    started = time.perf_counter()
    try:
        image = decode_image(data, size)
    except Exception as exc:
        raise _DecodeFailed(exc) from exc
    decoded = time.perf_counter()
    probs = np.asarray(predict(image[np.newaxis]))
    finished = time.perf_counter()
    if probs.ndim != 2 or probs.shape[0] != 1:
        raise RuntimeError(f"backend returned shape {probs.shape} for a batch of 1")
    return probs[0], started - enqueued, decoded - started, finished - decoded


def _timed_decode(data: bytes, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    image = decode_image(data, size)
    return image, time.perf_counter() - started


def _blank_jpeg(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size[1] * 2, size[0] * 2), (128, 128, 128)).save(buffer, format="JPEG")
    return buffer.getvalue()
