"""A small HTTP server on 127.0.0.1 for the img_url tests: images, redirects, big, slow and broken answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ImageServer:
    port: int
    image: bytes
    hosts_seen: list[str] = field(default_factory=list)
    paths_seen: list[str] = field(default_factory=list)
    bytes_sent: dict[str, int] = field(default_factory=dict)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            server.hosts_seen.append(self.headers.get("Host", ""))
            server.paths_seen.append(self.path)
            path, _, query = self.path.partition("?")
            if path == "/image.jpg":
                self._send(200, server.image, "image/jpeg")
            elif path == "/redirect":
                # ?to=<absolute or relative URL>
                self._redirect(query.removeprefix("to="))
            elif path == "/loop":
                self._redirect("/loop")
            elif path == "/big-declared":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.end_headers()
                self._stream("/big-declared", 64 * 1024, total=50 * 1024 * 1024)
            elif path == "/big-chunked":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._stream("/big-chunked", 64 * 1024, total=50 * 1024 * 1024, chunked=True)
            elif path == "/slow":
                time.sleep(3.0)
                self._send(200, server.image, "image/jpeg")
            elif path == "/drip":
                # Headers at once, then a byte now and then: every single read is quick, the whole is not.
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(server.image)))
                self.end_headers()
                for byte in server.image[:40]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            elif path == "/text":
                self._send(200, b"hello, not an image", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _stream(self, name: str, chunk_size: int, *, total: int, chunked: bool = False) -> None:
            chunk = b"\xff" * chunk_size
            sent = 0
            try:
                while sent < total:
                    if chunked:
                        self.wfile.write(f"{chunk_size:x}\r\n".encode() + chunk + b"\r\n")
                    else:
                        self.wfile.write(chunk)
                    sent += chunk_size
                    server.bytes_sent[name] = sent
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: what the size cap should do

    return Handler


@contextmanager
def image_server(image: bytes) -> Iterator[ImageServer]:
    state = ImageServer(port=0, image=image)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="image-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
