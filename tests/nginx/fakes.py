"""Stand-ins for what nginx meets in the compose network, on the host's loopback.

- `Replica`: an HTTP server on its own loopback address (127.0.0.2, 127.0.0.3, ...; all of 127/8 is
  local on Linux) and the shared port, like one classifier container: it answers the prediction
  endpoints with `X-Served-By: <its name>` and can be told to fail with 503.

Docker's embedded DNS is played by `bench.dns.DNSStub`, the one the benchmark uses too.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Replica(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, address: str, port: int) -> None:
        self.name = name
        self.fail_with: int | None = None
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        super().__init__((address, port), _ReplicaHandler)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Replica:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Shut down and close the socket: further connections are refused, as for a removed container."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()


class _ReplicaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Replica

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self.rfile.read(length))

    def _answer(self, body: bytes) -> None:
        with self.server.lock:
            self.server.requests[self.path] += 1
        status = self.server.fail_with or 200
        payload = {"predicted_label": "tabby", "probability": 0.9, "top_k": [], "bytes": len(body)}
        if status != 200:
            payload = {"error": "not_ready", "detail": f"{self.server.name} fails on purpose"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", self.server.name)
        self.send_header("Server-Timing", "infer;dur=1.5, total;dur=2")
        self.end_headers()
        self.wfile.write(data)
