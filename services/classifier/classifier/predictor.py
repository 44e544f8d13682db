"""The hot path of one prediction: decode + model call off the event loop -> top-k answer.

Nothing here runs model or image code on the event loop; the model is only ever called from the one thread
that owns it (a model object is never called from two threads at once). How an image reaches the model is
chosen once, when the predictor is built (`make_inference`):
- `DirectInference` (batching off, the default): one hand-off per request. The inference thread decodes the
  image and calls the model right after, as the bare backend loop does. A decode pool gains nothing here:
  images queue for the one model thread anyway, and the second hop (a thread wake-up and GIL hand-over each
  way, plus the batcher task) cost CPU on every request (bench/README.md, "Where a request's CPU goes"). No
  Batcher exists.
- `BatchedInference` (batching on): decode in a small pool of threads, then the batcher collects images for
  the inference thread.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Protocol

import numpy as np

from classifier.batching import Batcher, BatcherClosed
from classifier.errors import ApiError
from classifier.metrics import Metrics
from classifier.preprocess import ImageError, decode_image
from classifier.timing import Timings

if TYPE_CHECKING:
    from classifier.backends import Backend

log = logging.getLogger(__name__)


class _DecodeFailed(Exception):
    """Carries a decode error out of the inference thread, so that it is told apart from a model failure."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Inference(Protocol):
    """How a request's image bytes become one row of probabilities."""

    max_batch_size: int
    max_delay_s: float

    async def warm_up(self, rounds: int) -> None: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def run(self, data: bytes, timings: Timings) -> tuple[np.ndarray, int]:
        """(this image's probabilities, the size of the batch it ran in); adds its stages to `timings`."""
        ...


class DirectInference:
    """Batching off: decode and model call in one job on the inference thread."""

    max_batch_size = 1
    max_delay_s = 0.0

    def __init__(
        self, backend: Backend, input_size: tuple[int, int], infer_executor: Executor, metrics: Metrics
    ) -> None:
        self._backend = backend
        self._input_size = input_size
        self._executor = infer_executor
        self._metrics = metrics
        self._in_flight = 0
        self._closed = False

    async def warm_up(self, rounds: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _warm_model, self._backend, [1], rounds)
        blank = _blank_jpeg(self._input_size)
        await loop.run_in_executor(self._executor, decode_image, blank, self._input_size)

    def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def run(self, data: bytes, timings: Timings) -> tuple[np.ndarray, int]:
        if self._closed:
            raise ApiError("not_ready", "the service is shutting down")
        loop = asyncio.get_running_loop()
        # Requests waiting for the inference thread: all in flight here but the one it is running.
        self._in_flight += 1
        self._metrics.queue_depth(self._in_flight - 1)
        try:
            probs, queue_s, decode_s, infer_s = await loop.run_in_executor(
                self._executor,
                _decode_and_predict,
                self._backend.predict,
                data,
                self._input_size,
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
        return probs, 1


class BatchedInference:
    """Batching on: decode in the decode pool, then the batcher runs batches on the inference thread."""

    def __init__(
        self,
        backend: Backend,
        input_size: tuple[int, int],
        infer_executor: Executor,
        decode_executor: Executor,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_delay_s: float,
    ) -> None:
        self._backend = backend
        self._input_size = input_size
        self._infer_executor = infer_executor
        self._decode_executor = decode_executor
        self.batcher = Batcher(
            backend.predict,
            infer_executor,
            max_batch_size=max_batch_size,
            max_delay_s=max_delay_s,
            observer=metrics,
        )
        self.max_batch_size = self.batcher.max_batch_size
        self.max_delay_s = self.batcher.max_delay_s

    async def warm_up(self, rounds: int) -> None:
        loop = asyncio.get_running_loop()
        sizes = sorted({1, self.max_batch_size})
        await loop.run_in_executor(self._infer_executor, _warm_model, self._backend, sizes, rounds)
        blank = _blank_jpeg(self._input_size)
        await loop.run_in_executor(self._decode_executor, decode_image, blank, self._input_size)

    def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()

    async def run(self, data: bytes, timings: Timings) -> tuple[np.ndarray, int]:
        loop = asyncio.get_running_loop()
        try:
            image, seconds = await loop.run_in_executor(
                self._decode_executor, _timed_decode, data, self._input_size
            )
        except Exception as exc:
            raise _decode_error(exc) from None
        timings.add("decode", seconds)
        try:
            result = await self.batcher.submit(image)
        except BatcherClosed as exc:
            # Shutting down: a 503 lets nginx retry the request on another replica.
            raise ApiError("not_ready", str(exc)) from None
        timings.add("queue", result.queue_s)
        timings.add("infer", result.infer_s)
        return result.probs, result.batch_size


def make_inference(
    backend: Backend,
    input_size: tuple[int, int],
    *,
    max_batch_size: int,
    max_batch_delay_ms: float,
    infer_executor: Executor,
    decode_executor: Executor,
    metrics: Metrics,
) -> Inference:
    """The inference strategy for these settings: a batch of one needs no batcher."""
    if max_batch_size == 1:
        return DirectInference(backend, input_size, infer_executor, metrics)
    return BatchedInference(
        backend,
        input_size,
        infer_executor,
        decode_executor,
        metrics,
        max_batch_size=max_batch_size,
        max_delay_s=max_batch_delay_ms / 1000.0,
    )


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
        self.inference = make_inference(
            backend,
            self.input_size,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            infer_executor=infer_executor,
            decode_executor=decode_executor,
            metrics=metrics,
        )

    # --- life cycle ---
    async def warm_up(self, rounds: int = 3) -> None:
        """First calls are slow (graph tracing, XNNPACK packing, Pillow plugins): pay before readiness."""
        await self.inference.warm_up(rounds)

    def start(self) -> None:
        self.inference.start()

    async def close(self) -> None:
        await self.inference.close()

    # --- per request ---
    async def predict(self, data: bytes, timings: Timings) -> dict[str, object]:
        probs, batch_size = await self.inference.run(data, timings)
        return self.answer(probs, batch_size)

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


def _warm_model(backend: Backend, sizes: list[int], rounds: int) -> None:
    height, width = (int(backend.input_size[0]), int(backend.input_size[1]))
    for size in sizes:
        batch = np.zeros((size, height, width, 3), dtype=np.uint8)
        for _ in range(rounds):
            probs = np.asarray(backend.predict(batch))
        if probs.shape != (size, len(backend.labels)):
            raise RuntimeError(
                f"backend answered shape {probs.shape} for a batch of {size}, "
                f"expected ({size}, {len(backend.labels)})"
            )


def _decode_error(exc: Exception) -> ApiError:
    if isinstance(exc, ImageError):
        return ApiError(exc.code, exc.detail)
    # Decoders raise many kinds of errors on hostile input; it is still the input's fault, and a 5xx would
    # make nginx retry the same bad bytes on every replica.
    log.warning("decode failed outside ImageError: %r", exc)
    return ApiError("invalid_image", f"cannot decode the image: {type(exc).__name__}")


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
