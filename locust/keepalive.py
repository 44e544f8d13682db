"""A request lost on a kept-alive connection that the server closed goes once more, on a new connection.

Why: nginx closes its idle kept-alive connections when it reloads (SIGHUP: new workers start, the old ones
close what is idle and exit once their requests are done). A request a user sent on such a connection at
that moment gets no answer ("connection closed."), though the service never stopped: under 8 users a
reload lost 1-2 requests, and the classifier's img_url fetch from nginx lost one the same way. A browser
sends such a request again; geventhttpclient, FastHttpUser's client, does it only for idempotent methods
(RFC 9110, 9.2.2), and the lab's requests are POSTs. They are idempotent all the same (a classification
changes nothing), and RFC 9112, 9.3.1 lets a client that knows so send them again. geventhttpclient does so
only when the connection broke before an answer came (closed, reset), never after one; a new connection
that is refused still fails. No Locust import (unit-tested in-process).
"""

from __future__ import annotations

import geventhttpclient.client as _client


def every_request_is_idempotent(method: str) -> bool:
    return True


def retry_lost_requests() -> None:
    """Let geventhttpclient send any request again whose connection broke before the answer."""
    if not hasattr(_client, "_may_retry_after_send_error"):
        # tests/locust/test_keepalive.py fails first: a geventhttpclient without the hook needs another way.
        raise RuntimeError("geventhttpclient.client has no _may_retry_after_send_error to widen")
    _client._may_retry_after_send_error = every_request_is_idempotent
