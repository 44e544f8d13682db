"""A server that closes a kept-alive connection as a request comes in on it: what an nginx reload's old
worker does to its idle connections. For the clients that must send such a request again (the classifier's
img_url fetch, Locust's client)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@contextmanager
def closes_kept_alive_connections(body: bytes, content_type: str) -> Iterator[int]:
    """Answers the first request on each connection with `body` (keeping the connection alive) and closes
    the connection, unanswered, when the next request comes on it. Yields the port on 127.0.0.1."""
    listener = socket.create_server(("127.0.0.1", 0))
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()

    def serve(conn: socket.socket) -> None:
        with conn:
            answered, buffer = False, b""
            while data := conn.recv(65536):
                buffer += data
                while b"\r\n\r\n" in buffer:
                    request, buffer = buffer.split(b"\r\n\r\n", 1)
                    length = _content_length(request)
                    while len(buffer) < length:
                        buffer += conn.recv(65536)
                    buffer = buffer[length:]
                    if answered:
                        return  # closed as the request came in
                    conn.sendall(head + body)
                    answered = True

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
