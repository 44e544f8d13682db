"""A stand-in for nginx + classifier replicas, for running the real locustfile against 127.0.0.1.

Answers the classifier's HTTP contract (docs/architecture.md) with a fixed prediction, a `Server-Timing`
header and an `X-Served-By` header that rotates over a few fake replica names, and checks what Locust
sends: a multipart body with a `file` part for /predict, a JSON `img_url` under the expected prefix for
/predict/tf. Anything else is a 4xx, so a malformed request shows up as a Locust failure. With a `Stall`
it pauses like a server in a long GC or a stuck replica: every request that arrives during a pause is
answered when the pause ends. `restarting_standin` goes away for a while as a restarted nginx does: its
connections are reset and new ones refused, then it listens on the same port again. Stdlib only:
it runs in the pytest process, which must never import Locust (gevent monkey-patching).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLICAS = ("replica-a", "replica-b", "replica-c")
SERVER_TIMING = 'queue;dur=0.5, decode;dur=1.25;desc="decode, resize", infer;dur=3, total;dur=4.75'


@dataclass(frozen=True)
class Stall:
    """A pause of `for_s` seconds at the end of every `every_s` seconds since the server started."""

    every_s: float
    for_s: float

    def wait_s(self, since_start_s: float) -> float:
        phase = since_start_s % self.every_s
        return self.every_s - phase if phase >= self.every_s - self.for_s else 0.0


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, image_url_prefix: str, stall: Stall | None = None, bind_port: int = 0) -> None:
        super().__init__(("127.0.0.1", bind_port), _Handler)
        self.image_url_prefix = image_url_prefix
        self.stall = stall
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # "/predict 200", ...
        self.served: Counter[str] = Counter()
        self._replicas = itertools.cycle(REPLICAS)
        self.uploaded_names: set[str] = set()
        self.fetched_urls: set[str] = set()
        self.connections: set[socket.socket] = set()

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection reset by an outage on purpose is no error worth a traceback

    def reset_connections(self) -> None:
        """RST every open connection (SO_LINGER 0), as a process that dies takes its sockets with it."""
        with self.lock:
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            try:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_replica(self) -> str:
        with self.lock:
            replica = next(self._replicas)
            self.served[replica] += 1
            return replica


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as FastHttpUser expects
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    server: StandIn

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.server.stall is not None:
            time.sleep(self.server.stall.wait_s(time.monotonic() - self.server.started))
        path = self.path.rstrip("/") or "/"
        if path == "/predict":
            error = self._check_upload(body)
        elif path == "/predict/tf":
            error = self._check_url(body)
        else:
            self._reply(404, {"error": "not_found", "detail": self.path})
            return
        if error:
            self._reply(400, {"error": "bad_request", "detail": error})
            return
        headers = {"X-Served-By": self.server.next_replica(), "Server-Timing": SERVER_TIMING}
        top = {"label": "tabby", "probability": 0.9}
        answer = {"predicted_label": "tabby", "probability": 0.9, "top_k": [top]}
        self._reply(200, answer, headers)

    def _check_upload(self, body: bytes) -> str | None:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data; boundary="):
            return f"not multipart: {ctype!r}"
        boundary = ctype.split("boundary=", 1)[1].encode()
        if not body.startswith(b"--" + boundary + b"\r\n") or not body.endswith(b"--" + boundary + b"--\r\n"):
            return "multipart body not framed by its boundary"
        head = body.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        if 'name="file"' not in head or "filename=" not in head or "Content-Type: image/" not in head:
            return f"bad part header: {head!r}"
        with self.server.lock:
            self.server.uploaded_names.add(head.split('filename="', 1)[1].split('"', 1)[0])
        return None

    def _check_url(self, body: bytes) -> str | None:
        try:
            url = json.loads(body)["img_url"]
        except (ValueError, KeyError, TypeError):
            return "no JSON img_url"
        if not isinstance(url, str) or not url.startswith(self.server.image_url_prefix):
            return f"img_url {url!r} not under {self.server.image_url_prefix}"
        with self.server.lock:
            self.server.fetched_urls.add(url)
        return None

    def _reply(self, status: int, payload: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        with self.server.lock:
            self.server.requests[f"{self.path.rstrip('/')} {status}"] += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def running_standin(
    image_url_prefix: str = "http://nginx/images/", stall: Stall | None = None
) -> Iterator[StandIn]:
    server = StandIn(image_url_prefix, stall)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _serve(server: StandIn) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


class Restarting:
    """A stand-in that goes away at chosen times: `outage(at, for_s)` stops listening at `at` (time.time())
    and resets every connection, then listens again on the same port `for_s` later. What the clients
    see is what a `docker restart` of nginx gives them: resets, then refused connections, then service."""

    def __init__(self, image_url_prefix: str) -> None:
        self.image_url_prefix = image_url_prefix
        self.server = StandIn(image_url_prefix)
        self.port = self.server.server_address[1]
        self.base_url = self.server.base_url
        self.down: list[tuple[float, float]] = []  # (went away, listened again), time.time()
        self._thread = _serve(self.server)
        self._timer: threading.Thread | None = None

    def outage(self, at: float, for_s: float) -> None:
        def run() -> None:
            time.sleep(max(0.0, at - time.time()))
            old = self.server
            old.shutdown()
            old.server_close()
            gone = time.time()
            old.reset_connections()
            time.sleep(max(0.0, gone + for_s - time.time()))
            new = StandIn(self.image_url_prefix, bind_port=self.port)
            self.server = new
            self._thread = _serve(new)
            self.down.append((gone, time.time()))

        self._timer = threading.Thread(target=run, daemon=True)
        self._timer.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.join(timeout=30)
        self.server.shutdown()
        self.server.server_close()
        self.server.reset_connections()


@contextmanager
def restarting_standin(image_url_prefix: str = "http://nginx/images/") -> Iterator[Restarting]:
    server = Restarting(image_url_prefix)
    try:
        yield server
    finally:
        server.close()
