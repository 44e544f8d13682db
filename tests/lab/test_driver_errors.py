"""Driver error paths against a stand-in Locust web API (stdlib server, fast): the stack is restored and
the run says what failed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab.compare import Driver
from lab.grid import ExperimentSettings, StackConfig
from lab.locust_api import LocustAPI
from lab.stacks import StackError, StackState
from tests.lab.fakes import RecordingStack


class FakeMaster(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, swarm_answer: dict) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.swarm_answer = swarm_answer
        self.posts: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeMaster

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/worker-count":
            self._json({"worker_count": 1})
        elif self.path == "/stats/requests":
            self._json({"state": "ready", "workers": [], "worker_count": 1})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append(self.path)
        self._json(self.server.swarm_answer if self.path == "/swarm" else {"success": True})


@pytest.fixture
def refusing_master() -> Iterator[FakeMaster]:
    server = FakeMaster({"success": False, "message": "Missing or invalid user_count", "host": ""})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_refused_swarm_fails_the_run_and_restores_the_stack(
    refusing_master: FakeMaster, tmp_path: Path
) -> None:
    stack = RecordingStack(refusing_master.url, expect_workers=1)
    settings = ExperimentSettings(replicas=[1, 2], users=[4], duration_s=5, warmup_s=0)
    result = Driver(settings, stack, tmp_path, project_dir=tmp_path, log=lambda _m: None).run()
    assert result.error == "POST /swarm refused: Missing or invalid user_count"
    assert stack.applied == [StackConfig(1)] and len(stack.restored) == 1
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["status"] == "error" and run["stack_restored"] is True and "refused" in run["error"]
    config = json.loads((result.run_dir / "01-r1-u4" / "config.json").read_text())
    assert config["status"] == "error"
    measurement = json.loads((result.run_dir / "01-r1-u4" / "measurement.json").read_text())
    assert measurement["status"] == "error"
    assert refusing_master.posts == ["/swarm"]  # nothing started, so nothing to stop


class BrokenStack(RecordingStack):
    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        raise StackError("classifier not ready within 300s (want 2): loadlab-classifier-2: Up (unhealthy)")


class BuggyStack(RecordingStack):
    def describe(self) -> dict:
        raise KeyError("surprise")


@pytest.mark.parametrize(
    ("stack_class", "message"),
    [(BrokenStack, "classifier not ready within 300s"), (BuggyStack, "KeyError: 'surprise'")],
)
def test_stack_failures_are_reported_and_the_stack_put_back(
    refusing_master: FakeMaster, tmp_path: Path, stack_class: type[RecordingStack], message: str
) -> None:
    stack = stack_class(refusing_master.url, expect_workers=1)
    result = Driver(
        ExperimentSettings(replicas=[2], users=[4]),
        stack,
        tmp_path,
        project_dir=tmp_path,
        log=lambda _m: None,
    ).run()
    assert result.error is not None and message in result.error
    assert [type(s) for s in stack.restored] == [StackState]
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "error"


def test_an_older_master_without_the_locustfiles_routes_gives_no_file(refusing_master: FakeMaster) -> None:
    # GET /served-by and GET /server-timing come from the locustfile: a master without them answers 404,
    # and `lab compare` then saves no served_by.json / server_timing.json (the columns stay empty).
    api = LocustAPI(refusing_master.url)
    try:
        assert api.served_by() is None and api.server_timing() is None
    finally:
        api.close()
