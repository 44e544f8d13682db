"""The API's schema against its behaviour: schemathesis, every check, against the app with a stand-in model.

About 15 s (190 cases on this 2-core machine): the app runs in this process on loopback with the
stand-in backend; the lab's nginx, which serves the schema's example `img_url`, is stood in for by an
in-memory transport. The same run against the real stack through nginx is tests/e2e/test_contract.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from classifier.fetch import ImageFetcher
from tests.classifier.helpers import AppFactory
from tests.classifier.schemathesis_run import run_schemathesis

pytestmark = pytest.mark.slow

IMAGES = Path(__file__).resolve().parents[2] / "images"


def _lab_nginx(request: httpx.Request) -> httpx.Response:
    """What the lab's nginx answers at http://nginx/images/<name>: the repository's photos."""
    name = request.url.path.removeprefix("/images/")
    photo = IMAGES / name
    if request.headers.get("host") != "nginx" or "/" in name or not photo.is_file():
        return httpx.Response(404)
    # A stream, as from the network: the fetcher reads raw chunks.
    return httpx.Response(
        200, stream=httpx.ByteStream(photo.read_bytes()), headers={"content-type": "image/jpeg"}
    )


async def _nginx_address(host: str, port: int) -> list[str]:
    if host != "nginx":
        raise OSError(f"{host} does not resolve here")
    return ["127.0.0.1"]


@pytest.fixture
def served_app(app_factory: AppFactory) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread of this process; yields its base URL."""
    app: FastAPI = app_factory(url_allowlist=["nginx"])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        runtime = app.state.runtime
        # The model loads while uvicorn already answers: the fetcher below must replace the loaded one.
        for _ in range(200):
            if runtime.ready:
                break
            threading.Event().wait(0.05)
        assert runtime.ready, "the model did not load"
        runtime.fetcher = ImageFetcher(
            httpx.AsyncClient(transport=httpx.MockTransport(_lab_nginx)),
            ["nginx"],
            max_bytes=runtime.settings.url_max_bytes,
            timeout_s=runtime.settings.url_timeout_s,
            max_redirects=runtime.settings.url_max_redirects,
            resolver=_nginx_address,
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.mark.parametrize("image_hook", [True, False], ids=["real-images", "no-hooks"])
def test_schemathesis_finds_no_disagreement(served_app: str, tmp_path: Path, image_hook: bool) -> None:
    """With the image hook every upload is a real picture; without it (as a user runs `st run`) uploads are
    whatever bytes the schema allows, and the schema must document how the service refuses them."""
    run = run_schemathesis(
        f"{served_app}/openapi.json", tmp_path, max_examples=50, timeout_s=120, image_hook=image_hook
    )
    print(
        f"schemathesis ({'real images' if image_hook else 'no hooks'}): {run.cases} cases in "
        f"{run.seconds:.1f} s\n{run.summary}"
    )
    assert run.returncode == 0, run.output
    assert run.cases >= 150, run.output  # the run really generated cases for every operation
