"""Smoke test of the real server: gunicorn + 2 uvicorn workers + the LiteRT backend + the real ImageNet model.

Starts `python -m gunicorn` in services/classifier exactly as the image does (gunicorn.conf.py, settings from
CLASSIFIER_* variables), on 127.0.0.1 and a free port, then stops it with SIGTERM.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.classifier.helpers import parse_server_timing
from tests.classifier.image_server import image_server

REPO = Path(__file__).resolve().parents[2]
SERVICE_DIR = REPO / "services" / "classifier"
IMAGENET = REPO / ".." / "shared" / "fixtures" / "imagenet"
TFLITE = IMAGENET / "mobilenet_v2_1.0_224_quant.tflite"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not TFLITE.is_file(), reason=f"real ImageNet fixtures not found in {IMAGENET.resolve()}"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert not installed"
    ),
]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    home: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment_without_settings() -> dict[str, str]:
    """This process's environment without the service's own settings (the test sets them)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLASSIFIER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("gunicorn")
    model_dir = root / "model"
    model_dir.mkdir()
    # The service's layout (model.tflite + labels.txt), linked to the shared fixtures (never copied).
    (model_dir / "model.tflite").symlink_to(TFLITE.resolve())
    (model_dir / "labels.txt").symlink_to((IMAGENET / "imagenet_labels.txt").resolve())
    home = root / "home"
    home.mkdir()
    port = free_port()
    env = _environment_without_settings()
    env.update(
        {
            "HOME": str(home),
            "CLASSIFIER_BACKEND": "litert",
            "CLASSIFIER_MODEL_DIR": str(model_dir),
            "CLASSIFIER_WORKERS": "2",
            "CLASSIFIER_BIND_HOST": "127.0.0.1",
            "CLASSIFIER_PORT": str(port),
            "CLASSIFIER_METRICS_DIR": str(root / "metrics"),
            "CLASSIFIER_URL_ALLOWLIST": "127.0.0.1",
            "CLASSIFIER_MAX_BATCH_SIZE": "4",
            "CLASSIFIER_MAX_BATCH_DELAY_MS": "2",
        }
    )
    log = root / "gunicorn.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn"],
            cwd=SERVICE_DIR,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Server(f"http://127.0.0.1:{port}", process, log, home)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{running.log_text()}")
            try:
                if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn not ready within 120 s:\n{running.log_text()}")
            time.sleep(0.25)
        # Both workers: readiness above may have come from the first one to finish loading.
        while "classifier_ready_workers 2.0" not in httpx.get(f"{running.url}/metrics", timeout=5).text:
            if time.monotonic() > deadline:
                pytest.fail(f"second worker not ready:\n{running.log_text()}")
            time.sleep(0.25)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_parrot_is_a_macaw(server: Server) -> None:
    with (IMAGENET / "parrot.jpg").open("rb") as photo:
        response = httpx.post(
            f"{server.url}/predict", files={"file": ("parrot.jpg", photo, "image/jpeg")}, timeout=30
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predicted_label"] == "macaw"
    assert body["backend"] == "litert"
    assert response.headers["x-served-by"] == socket.gethostname()
    assert set(parse_server_timing(response.headers["server-timing"])) == {
        "queue",
        "decode",
        "infer",
        "total",
    }


def test_cat_by_url(server: Server) -> None:
    with image_server((IMAGENET / "cat_720p.jpg").read_bytes()) as images:
        response = httpx.post(
            f"{server.url}/predict/tf/", json={"img_url": images.url("/image.jpg")}, timeout=30
        )
    assert response.status_code == 200, response.text
    assert "cat" in response.json()["predicted_label"]


def test_bad_input_keeps_the_workers_ready(server: Server) -> None:
    for _ in range(4):
        bad = httpx.post(
            f"{server.url}/predict", files={"file": ("x.jpg", b"not an image", "image/jpeg")}, timeout=10
        )
        assert bad.status_code == 422
        assert bad.json()["error"] == "not_an_image"
    assert "classifier_ready_workers 2.0" in httpx.get(f"{server.url}/metrics", timeout=5).text


def test_metrics_add_up_over_both_workers(server: Server) -> None:
    photo = (IMAGENET / "parrot.jpg").read_bytes()
    before = _worker_counts(server)
    for _ in range(8):
        # A new connection each time, so that either worker may take it.
        response = httpx.post(
            f"{server.url}/predict", content=photo, headers={"content-type": "image/jpeg"}, timeout=30
        )
        assert response.status_code == 200
    after = _worker_counts(server)
    assert sum(after.values()) - sum(before.values()) == 8
    assert len(after) <= 2
    model = httpx.get(f"{server.url}/model", timeout=5).json()
    assert model["workers_per_replica"] == 2
    assert model["batching"]["max_batch_size"] == 4


def test_stops_cleanly_without_a_control_socket(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0, server.log_text()
    # gunicorn 27 would otherwise create $HOME/.gunicorn/gunicorn.ctl (a read-only container has no home).
    assert not (server.home / ".gunicorn").exists()
    log = server.log_text()
    assert "uvicorn_worker.UvicornWorker" in log
    assert "Traceback" not in log


def _worker_counts(server: Server) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(f"{server.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("classifier_worker_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels] = float(value)
    return counts


def test_a_model_that_does_not_load_stops_gunicorn(tmp_path: Path) -> None:
    """The worker serves while its model loads; when the load fails it exits with gunicorn's boot-error
    code, so the master stops too (and Docker's restart policy applies) rather than forking it again."""
    env = _environment_without_settings()
    env.update(
        {
            "HOME": str(tmp_path),
            "CLASSIFIER_BACKEND": "litert",
            "CLASSIFIER_MODEL_DIR": str(tmp_path / "no-model"),
            "CLASSIFIER_WORKERS": "1",
            "CLASSIFIER_BIND_HOST": "127.0.0.1",
            "CLASSIFIER_PORT": str(free_port()),
            "CLASSIFIER_METRICS_DIR": str(tmp_path / "metrics"),
        }
    )
    command = [sys.executable, "-m", "gunicorn"]
    done = subprocess.run(command, cwd=SERVICE_DIR, env=env, capture_output=True, text=True, timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode == 3, log  # gunicorn's "Worker failed to boot" (HaltServer)
    assert "the model did not load" in log, log
