"""Plain ASGI middleware (cheaper per request than Starlette's BaseHTTPMiddleware).

- RequestMetrics: counts and times every request, stamps `X-Served-By`.
- BodyLimit: refuses an oversized body with 413 before reading it (Content-Length) or as soon as the
  streamed bytes pass the limit (chunked uploads), so a huge upload never sits in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifier.errors import PAYLOAD_TOO_LARGE, ApiError, error_response
from classifier.metrics import Metrics, endpoint_label


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics, served_by: str) -> None:
        self.app = app
        self.metrics = metrics
        self.served_by = served_by

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Served-By", self.served_by)
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_stamped)
        finally:
            self.metrics.inflight.dec()
            self.metrics.observe_request(
                endpoint_label(scope["path"]), scope["method"], status, time.perf_counter() - started
            )


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, PAYLOAD_TOO_LARGE, f"request body is over the limit of {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await error_response(
                413, PAYLOAD_TOO_LARGE, f"request body of {declared} bytes is over the limit of {limit} bytes"
            )(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the endpoint's read; the ApiError handler turns it into the 413 answer.
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
