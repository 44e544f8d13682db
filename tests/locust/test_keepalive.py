"""locust/keepalive.py: a POST lost on a kept-alive connection that the server closed is sent again on a new
connection, by FastHttpUser's own client (geventhttpclient), so an nginx reload costs no request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import geventhttpclient.client as client_module
import pytest
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPConnectionClosed

from tests.locust._modules import load

keepalive = load("keepalive")
ANSWER = b'{"predicted_label": "cat"}'
HOOK = "_may_retry_after_send_error"


@pytest.fixture(autouse=True)
def hook_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test leaves geventhttpclient's hook as it found it."""
    monkeypatch.setattr(client_module, HOOK, getattr(client_module, HOOK))


@contextmanager
def closes_kept_alive_connections() -> Iterator[int]:
    """Answers the first request on each connection, keeping it alive, and closes the connection unanswered
    when the next request comes on it: an nginx reload's old worker closing an idle connection as a
    request is on its way. Yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(ANSWER)}\r\n\r\n"

    def serve(conn: socket.socket) -> None:
        with conn:
            answered, buffer = 0, b""
            while data := conn.recv(65536):
                buffer += data
                while b"\r\n\r\n" in buffer:
                    request, buffer = buffer.split(b"\r\n\r\n", 1)
                    length = next(
                        (int(line.split(b":")[1]) for line in request.split(b"\r\n")
                         if line.lower().startswith(b"content-length:")), 0,
                    )  # fmt: skip
                    while len(buffer) < length:
                        buffer += conn.recv(65536)
                    buffer = buffer[length:]
                    if answered:
                        return  # closed as the request came in
                    conn.sendall(head.encode() + ANSWER)
                    answered += 1

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


def _post_three_times(port: int) -> None:
    client = HTTPClient("127.0.0.1", port, concurrency=1)
    try:
        for _ in range(3):
            response = client.post("/predict", body=b"x" * 1000, headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200 and response.read() == ANSWER
    finally:
        client.close()


def test_without_it_a_post_on_a_closed_kept_alive_connection_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """geventhttpclient on its own: the second POST goes out on the connection the first kept alive and
    fails. (Its own rule, should another test in this process have widened it.)"""
    monkeypatch.setattr(client_module, HOOK, lambda method: method in ("GET", "HEAD"))
    with closes_kept_alive_connections() as port, pytest.raises(HTTPConnectionClosed):
        _post_three_times(port)


def test_with_it_the_post_goes_again_on_a_new_connection() -> None:
    keepalive.retry_lost_requests()
    with closes_kept_alive_connections() as port:
        _post_three_times(port)


def test_a_refused_connection_still_fails() -> None:
    """The retry is for a connection that broke, not for a service that is gone (restart-nginx's outage)."""
    keepalive.retry_lost_requests()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        _post_three_times(port)
