from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from classifier.main import create_app
from tests.classifier.fake_backend import FakeBackend, RecordingLoader
from tests.classifier.helpers import AppFactory, make_settings, serve


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def app_factory(backend: FakeBackend) -> AppFactory:
    """create_app with the stand-in backend; keyword arguments override settings."""

    def factory(backend_: FakeBackend | None = None, **overrides: object) -> FastAPI:
        return create_app(make_settings(**overrides), backend_loader=RecordingLoader(backend_ or backend))

    return factory


@pytest_asyncio.fixture
async def client(app_factory: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app_factory()) as client:
        yield client
