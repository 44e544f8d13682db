"""Helpers of the classifier service tests: test images, settings, running an app with its lifespan."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from PIL import Image

from classifier.settings import Settings

AppFactory = Callable[..., FastAPI]
"""The `app_factory` fixture: (backend=None, **settings overrides) -> app with the stand-in backend."""


def jpeg_bytes(color: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_settings(**overrides: object) -> Settings:
    # Every value the tests rely on is explicit: CLASSIFIER_* variables of the calling shell cannot leak in.
    values: dict[str, object] = {
        "backend": "litert",
        "model_dir": "/nonexistent/model",
        "max_batch_size": 1,
        "max_batch_delay_ms": 2.0,
        "top_k": 5,
        "decode_threads": 2,
        "max_upload_bytes": 10 * 1024 * 1024,
        "url_allowlist": ["nginx"],
        "url_timeout_s": 2.0,
        "url_max_bytes": 10 * 1024 * 1024,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Runs the app's lifespan around an in-process client, as a server would, once the model it loads
    meanwhile is loaded and warm (a load that fails is raised here)."""
    async with app.router.lifespan_context(app):
        await app.state.runtime.loading
        # Like a real server: a 500 is answered to the client, not raised into the test.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://classifier") as client:
            yield client


def parse_server_timing(header: str) -> dict[str, float]:
    """`queue;dur=0.41, decode;dur=3.1` -> {"queue": 0.41, "decode": 3.1} (milliseconds)."""
    metrics: dict[str, float] = {}
    for entry in header.split(","):
        match = re.fullmatch(r"\s*([A-Za-z0-9_-]+)\s*;\s*dur=([0-9]+(?:\.[0-9]+)?)\s*", entry)
        assert match, f"malformed Server-Timing entry {entry!r} in {header!r}"
        metrics[match.group(1)] = float(match.group(2))
    return metrics
