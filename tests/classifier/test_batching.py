"""The adaptive batcher on its own: batch formation, equivalence with unbatched answers, delays, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
import pytest

from classifier.batching import Batcher, BatcherClosed, BatchResult
from tests.classifier.fake_backend import FakeBackend

pytestmark = pytest.mark.asyncio


class Observer:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.batches: list[int] = []

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def batch_done(self, size: int, infer_s: float) -> None:
        self.batches.append(size)


def images(count: int, size: tuple[int, int] = (32, 32)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


@asynccontextmanager
async def running(
    predict: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int, max_delay_s: float
) -> AsyncIterator[tuple[Batcher, Observer]]:
    observer = Observer()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
    batcher = Batcher(
        predict, executor, max_batch_size=max_batch_size, max_delay_s=max_delay_s, observer=observer
    )
    batcher.start()
    try:
        yield batcher, observer
    finally:
        await batcher.close()
        executor.shutdown(wait=True)


async def test_concurrent_requests_are_batched_and_answers_match_unbatched() -> None:
    backend = FakeBackend(delay_s=0.02)
    inputs = images(24)
    async with running(backend.predict, max_batch_size=8, max_delay_s=0.05) as (batcher, observer):
        results = await asyncio.gather(*(batcher.submit(image) for image in inputs))

    assert max(observer.batches) > 1
    assert max(observer.batches) <= 8
    assert sum(observer.batches) == len(inputs)
    assert backend.batch_sizes == observer.batches
    assert {r.batch_size for r in results} == set(observer.batches)
    for image, result in zip(inputs, results, strict=True):
        alone = FakeBackend().predict(image[np.newaxis])[0]
        # Bit for bit: batching must not change any answer.
        assert np.array_equal(result.probs, alone)


async def test_full_batch_does_not_wait_for_the_delay() -> None:
    backend = FakeBackend()
    async with running(backend.predict, max_batch_size=4, max_delay_s=5.0) as (batcher, _observer):
        started = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit(image) for image in images(4)))
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert [r.batch_size for r in results] == [4, 4, 4, 4]


async def test_lone_request_waits_at_most_the_delay() -> None:
    backend = FakeBackend()
    delay = 0.15
    async with running(backend.predict, max_batch_size=8, max_delay_s=delay) as (batcher, _observer):
        started = time.perf_counter()
        result = await batcher.submit(images(1)[0])
        elapsed = time.perf_counter() - started
    assert result.batch_size == 1
    assert result.queue_s >= delay * 0.9
    # Generous upper bound for a loaded CI machine, still far below "waits for a full batch forever".
    assert elapsed < delay + 0.5


async def test_batching_off_never_waits() -> None:
    backend = FakeBackend()
    # A huge delay must be ignored when the batch size is 1.
    async with running(backend.predict, max_batch_size=1, max_delay_s=10.0) as (batcher, observer):
        results = await asyncio.gather(*(batcher.submit(image) for image in images(6)))
    assert observer.batches == [1] * 6
    assert all(r.queue_s < 1.0 for r in results)


async def test_requests_arriving_during_a_batch_form_the_next_one() -> None:
    backend = FakeBackend(delay_s=0.1)
    inputs = images(5)
    async with running(backend.predict, max_batch_size=8, max_delay_s=0.0) as (batcher, observer):
        first = asyncio.create_task(batcher.submit(inputs[0]))
        await asyncio.sleep(0.03)  # the first batch (of 1) is now running
        rest = await asyncio.gather(*(batcher.submit(image) for image in inputs[1:]))
        await first
    assert observer.batches == [1, 4]
    # They queued behind the running batch: their queue time shows it.
    assert min(r.queue_s for r in rest) > 0.03


async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    poisoned = np.full((32, 32, 3), 255, np.uint8)
    backend = FakeBackend(delay_s=0.05, fail_if=lambda batch: bool((batch == 255).all(axis=(1, 2, 3)).any()))
    healthy = images(3)
    async with running(backend.predict, max_batch_size=2, max_delay_s=0.5) as (batcher, _observer):
        bad_batch = [asyncio.create_task(batcher.submit(image)) for image in (poisoned, healthy[0])]
        outcomes = await asyncio.gather(*bad_batch, return_exceptions=True)
        later = await asyncio.gather(*(batcher.submit(image) for image in healthy[1:]))

    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert all(isinstance(r, BatchResult) for r in later)
    assert backend.batch_sizes == [2, 2]


async def test_a_cancelled_request_is_not_inferred() -> None:
    backend = FakeBackend(delay_s=0.1)
    inputs = images(3)
    async with running(backend.predict, max_batch_size=8, max_delay_s=0.0) as (batcher, _observer):
        busy = asyncio.create_task(batcher.submit(inputs[0]))
        await asyncio.sleep(0.03)
        gone = asyncio.create_task(batcher.submit(inputs[1]))
        kept = asyncio.create_task(batcher.submit(inputs[2]))
        await asyncio.sleep(0.01)
        gone.cancel()  # its client went away while it queued
        await busy
        result = await kept
    assert result.batch_size == 1
    assert backend.batch_sizes == [1, 1]


async def test_inference_runs_on_the_executor_thread_one_call_at_a_time() -> None:
    backend = FakeBackend(delay_s=0.01)
    async with running(backend.predict, max_batch_size=3, max_delay_s=0.001) as (batcher, _observer):
        await asyncio.gather(*(batcher.submit(image) for image in images(12)))
    assert backend.threads and all(name.startswith("infer") for name in backend.threads)
    assert backend.overlapping_calls == 0


async def test_queue_depth_is_reported_and_drains_to_zero() -> None:
    backend = FakeBackend(delay_s=0.02)
    async with running(backend.predict, max_batch_size=2, max_delay_s=0.0) as (batcher, observer):
        await asyncio.gather(*(batcher.submit(image) for image in images(6)))
        assert batcher.depth == 0
    assert max(observer.depths) >= 2
    assert observer.depths[-1] == 0


async def test_wrong_output_shape_fails_the_batch_with_a_clear_error() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        return np.zeros((1, 10), np.float32)

    async with running(broken, max_batch_size=4, max_delay_s=0.2) as (batcher, _observer):
        pending = [batcher.submit(image) for image in images(2)]
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "shape" in str(o) for o in outcomes)


async def test_close_fails_waiting_requests_and_refuses_new_ones() -> None:
    backend = FakeBackend(delay_s=0.2)
    executor = ThreadPoolExecutor(max_workers=1)
    batcher = Batcher(backend.predict, executor, max_batch_size=1, max_delay_s=0.0)
    batcher.start()
    inputs = images(3)
    running_one = asyncio.create_task(batcher.submit(inputs[0]))
    waiting = asyncio.create_task(batcher.submit(inputs[1]))
    await asyncio.sleep(0.05)
    await batcher.close()
    with pytest.raises((BatcherClosed, asyncio.CancelledError)):
        await waiting
    running_one.cancel()
    with pytest.raises(BatcherClosed):
        await batcher.submit(inputs[2])
    executor.shutdown(wait=True)


async def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher(FakeBackend().predict, ThreadPoolExecutor(1), max_batch_size=0, max_delay_s=0.0)
