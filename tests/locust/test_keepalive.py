"""locust/keepalive.py: a POST lost on a kept-alive connection that the server closed is sent again on a new
connection, by FastHttpUser's own client (geventhttpclient), so an nginx reload costs no request."""

from __future__ import annotations

import socket

import geventhttpclient.client as client_module
import pytest
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPConnectionClosed

from tests.keepalive_server import closes_kept_alive_connections
from tests.locust._modules import load

keepalive = load("keepalive")
ANSWER = b'{"predicted_label": "cat"}'
HOOK = "_may_retry_after_send_error"


@pytest.fixture(autouse=True)
def hook_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test leaves geventhttpclient's hook as it found it."""
    monkeypatch.setattr(client_module, HOOK, getattr(client_module, HOOK))


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
    server = closes_kept_alive_connections(ANSWER, "application/json")
    with server as port, pytest.raises(HTTPConnectionClosed):
        _post_three_times(port)


def test_with_it_the_post_goes_again_on_a_new_connection() -> None:
    keepalive.retry_lost_requests()
    with closes_kept_alive_connections(ANSWER, "application/json") as port:
        _post_three_times(port)


def test_a_refused_connection_still_fails() -> None:
    """The retry is for a connection that broke, not for a service that is gone (restart-nginx's outage)."""
    keepalive.retry_lost_requests()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        _post_three_times(port)
