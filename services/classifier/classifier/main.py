"""Wiring: settings -> app, middleware, routes; the lifespan loads and warms the model while the app already
answers (503 not_ready until then), then reports ready.

gunicorn imports `classifier.main:app` in each worker after the fork (no preload), so every worker
process owns its model, its inference thread and its HTTP client; nothing is loaded before the lifespan
starts. Tests call `create_app(settings, backend_loader=...)` with a stand-in model.
Without gunicorn: `uvicorn classifier.main:app`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI

from classifier.api import body_limit, router
from classifier.classify import Runtime
from classifier.errors import install_error_handlers
from classifier.fetch import ImageFetcher, make_client
from classifier.metrics import Metrics
from classifier.middleware import BodyLimit, RequestMetrics, UploadFastPath
from classifier.predictor import Predictor
from classifier.settings import Settings

if TYPE_CHECKING:
    from classifier.backends import Backend

log = logging.getLogger("classifier")

BackendLoader = Callable[..., "Backend"]
"""`load_backend(kind, model_path, labels_path, *, threads, inter_op_threads) -> Backend`."""


def load_backend(
    kind: str, model_path: str, labels_path: str, *, threads: int, inter_op_threads: int
) -> Backend:
    # Imported here so that importing the app (tests, gunicorn's master) never imports a model runtime.
    from classifier.backends import load_backend as load

    return load(kind, model_path, labels_path, threads=threads, inter_op_threads=inter_op_threads)


# gunicorn's exit code for a worker that failed to boot: the master then stops (the container exits and its
# restart policy applies) instead of forking the same failure again and again.
WORKER_BOOT_ERROR = 3


def exit_worker(error: BaseException) -> None:
    """A model that does not load ends the worker process, as a failed startup did."""
    log.critical("the model did not load: %s: %s", type(error).__name__, error)
    logging.shutdown()
    os._exit(WORKER_BOOT_ERROR)


def create_app(
    settings: Settings | None = None,
    backend_loader: BackendLoader = load_backend,
    on_load_error: Callable[[BaseException], None] = exit_worker,
) -> FastAPI:
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    runtime = Runtime(settings=settings, metrics=Metrics(), hostname=socket.gethostname())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        infer_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        decode_executor = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="decode")
        client = make_client(settings.url_timeout_s)
        # The app answers while the model loads: every request gets 503 not_ready at once, which nginx sends
        # on to another replica. Loading before serving left the port to the kernel, which queues connections
        # from the moment gunicorn binds: a replica Docker restarted after a kill held every request nginx
        # sent it until its model was loaded (all 8 users' requests for 8.4 s, measured with TF).
        load = _load_and_warm(runtime, backend_loader, infer_executor, decode_executor, client)
        runtime.loading = asyncio.create_task(load, name="load model")
        runtime.loading.add_done_callback(partial(_report_load_error, on_load_error))
        try:
            yield
        finally:
            runtime.loading.cancel()
            runtime.ready = False
            runtime.metrics.ready_workers.set(0)
            if runtime.predictor is not None:
                await runtime.predictor.close()
            await client.aclose()
            infer_executor.shutdown(wait=False, cancel_futures=True)
            decode_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="mlserve-loadlab classifier",
        summary="MobileNetV2 ImageNet classifier: upload or img_url in, top-k labels out",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(router)
    # Innermost: the common upload is answered here, inside the body limit and the request metrics.
    app.add_middleware(UploadFastPath, runtime=runtime)
    app.add_middleware(BodyLimit, limit_for=partial(body_limit, settings))
    # Added last = outermost: it also counts and stamps the answers the inner layers make.
    app.add_middleware(RequestMetrics, metrics=runtime.metrics, served_by=runtime.hostname)
    return app


def _report_load_error(on_load_error: Callable[[BaseException], None], loading: asyncio.Task[None]) -> None:
    if not loading.cancelled() and (error := loading.exception()) is not None:
        on_load_error(error)


async def _load_and_warm(
    runtime: Runtime,
    backend_loader: BackendLoader,
    infer_executor: ThreadPoolExecutor,
    decode_executor: ThreadPoolExecutor,
    client: httpx.AsyncClient,
) -> None:
    settings = runtime.settings
    started = time.perf_counter()
    # Loaded on the inference thread, like every later call: runtimes with thread affinity stay happy.
    backend = await asyncio.get_running_loop().run_in_executor(
        infer_executor,
        partial(
            backend_loader,
            settings.backend,
            str(settings.model_path),
            str(settings.labels_path),
            threads=settings.threads,
            inter_op_threads=settings.inter_op_threads,
        ),
    )
    loaded = time.perf_counter()
    predictor = Predictor(
        backend,
        top_k=settings.top_k,
        max_batch_size=settings.max_batch_size,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        infer_executor=infer_executor,
        decode_executor=decode_executor,
        metrics=runtime.metrics,
    )
    await predictor.warm_up()
    predictor.start()
    runtime.predictor = predictor
    runtime.model_name = _model_name(settings)
    runtime.fetcher = ImageFetcher(
        client,
        settings.url_allowlist,
        max_bytes=settings.url_max_bytes,
        timeout_s=settings.url_timeout_s,
        max_redirects=settings.url_max_redirects,
    )
    height, width = predictor.input_size
    runtime.metrics.model_info.labels(
        backend=backend.name,
        model=runtime.model_name,
        input_size=f"{height}x{width}",
        labels=str(len(predictor.labels)),
        max_batch_size=str(settings.max_batch_size),
        threads=str(settings.threads),
    ).set(1)
    runtime.metrics.ready_workers.set(1)
    runtime.ready = True
    log.info(
        "ready: backend=%s model=%s input=%dx%d labels=%d batch<=%d load=%.2fs warm=%.2fs",
        backend.name,
        settings.model_path,
        height,
        width,
        len(predictor.labels),
        settings.max_batch_size,
        loaded - started,
        time.perf_counter() - loaded,
    )


def _model_name(settings: Settings) -> str:
    # fetch_model.py records the model's source (a TF Hub handle, a URL, a file) next to the model.
    try:
        manifest = json.loads((settings.model_dir / "manifest.json").read_text(encoding="utf-8"))
        return str(manifest["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(settings.model_path)


def _configure_logging(level: str) -> None:
    # gunicorn sets up only its own loggers; give ours a handler unless someone (pytest, uvicorn) already did.
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    log.setLevel(level.upper())


app = create_app()
