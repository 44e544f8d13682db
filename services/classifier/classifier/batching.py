"""Adaptive batching around a backend's `predict`, inside one worker process.

Requests queue up; one consumer task takes up to `max_batch_size` of them, waiting at most `max_delay_s`
after the oldest one was queued for more to arrive, and runs one `predict` in the inference executor. While a
batch runs, newcomers queue, so under load batches fill up without any wait; when idle, a lone request waits
at most the delay. With `max_batch_size == 1` nothing ever waits. The backend is not touched: this only calls
`predict(batch) -> probs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class BatchResult:
    probs: np.ndarray
    """This image's probabilities, shape [num_labels]."""
    queue_s: float
    """From submit to the start of its model call (seconds)."""
    infer_s: float
    """Duration of the model call it was part of (seconds)."""
    batch_size: int


class BatchObserver(Protocol):
    def queue_depth(self, depth: int) -> None: ...

    def batch_done(self, size: int, infer_s: float) -> None: ...


@dataclass(slots=True)
class _Item:
    image: np.ndarray
    future: asyncio.Future[BatchResult]
    enqueued: float


class BatcherClosed(RuntimeError):
    pass


class Batcher:
    def __init__(
        self,
        predict: PredictFn,
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay_s: float,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._predict = predict
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s if max_batch_size > 1 else 0.0
        self._observer = observer
        # A deque plus an Event rather than asyncio.Queue + wait_for: a timed-out wait never loses an item.
        self._pending: deque[_Item] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._consume(), name="batcher")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(BatcherClosed("the service is shutting down"))
        self._report_depth()

    async def submit(self, image: np.ndarray) -> BatchResult:
        if self._closed or self._task is None:
            raise BatcherClosed("the batcher is not running")
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(image, future, time.perf_counter()))
        self._arrived.set()
        self._report_depth()
        return await future

    async def _consume(self) -> None:
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            await self._wait_for_more()
            batch: list[_Item] = []
            while self._pending and len(batch) < self.max_batch_size:
                item = self._pending.popleft()
                # A client that went away cancelled its future: skip it instead of spending inference on it.
                if not item.future.cancelled():
                    batch.append(item)
            self._report_depth()
            if batch:
                await self._run(batch)

    async def _wait_for_more(self) -> None:
        # The delay counts from when the oldest request was queued, so a request that already waited through
        # the previous batch does not wait again.
        deadline = self._pending[0].enqueued + self.max_delay_s
        while len(self._pending) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return

    async def _run(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            probs, started, finished = await loop.run_in_executor(
                self._executor, _predict_batch, self._predict, [item.image for item in batch]
            )
        except Exception as exc:
            # Only this batch fails; the consumer carries on with the next one.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        infer_s = finished - started
        if self._observer is not None:
            self._observer.batch_done(len(batch), infer_s)
        for row, item in enumerate(batch):
            if not item.future.done():
                item.future.set_result(BatchResult(probs[row], started - item.enqueued, infer_s, len(batch)))

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(len(self._pending))


def _predict_batch(predict: PredictFn, images: list[np.ndarray]) -> tuple[np.ndarray, float, float]:
    """Runs in the inference thread: stacking there keeps the copy off the event loop."""
    started = time.perf_counter()
    batch = images[0][np.newaxis] if len(images) == 1 else np.stack(images)
    probs = np.asarray(predict(batch))
    finished = time.perf_counter()
    if probs.ndim != 2 or probs.shape[0] != len(images):
        raise RuntimeError(f"backend returned shape {probs.shape} for a batch of {len(images)}")
    return probs, started, finished
