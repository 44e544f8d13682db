"""Plain ASGI middleware (cheaper per request than Starlette's BaseHTTPMiddleware).

- RequestMetrics: counts and times every request, stamps `X-Served-By`.
- BodyLimit: refuses an oversized body with 413 before reading it (Content-Length) or as soon as the
  streamed bytes pass the limit (chunked uploads), so a huge upload never sits in memory.
- UploadFastPath: answers the common `POST /predict` upload without the router (innermost).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifier.classify import Runtime, classify
from classifier.errors import PAYLOAD_TOO_LARGE, ApiError
from classifier.fetch import ImageFetcher
from classifier.metrics import Metrics, endpoint_label
from classifier.multipart import boundary_of, single_file_part
from classifier.timing import Timings


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
        super().__init__(PAYLOAD_TOO_LARGE, f"request body is over the limit of {limit} bytes")


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
            too_large = f"request body of {declared} bytes is over the limit of {limit} bytes"
            await ApiError(PAYLOAD_TOO_LARGE, too_large).response()(scope, receive, send)
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


class UploadFastPath:
    """`POST /predict` with the one body shape nearly every client sends (a single multipart file part named
    `file`, within the size limit), answered without the router: the same `classify` as the route
    (api.predict_upload), minus Starlette's and FastAPI's per-request machinery (routing, the exception and
    exit-stack layers, the Request object, dependency solving). That machinery cost 0.12 ms of event-loop
    CPU per request alone and about 0.2 ms between model calls on the same core (bench/README.md). Anything
    else, an empty or oversized file included, goes on to the app with the body it has read, so every 4xx
    and the schema stay the route's; so does every request while the worker is not ready (the route answers
    503 before it reads a body).

    Sits inside BodyLimit and RequestMetrics: the limit, the counts and X-Served-By apply as to any request.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        boundary = None
        if scope["type"] == "http" and scope["path"] == "/predict" and scope["method"] == "POST":
            boundary = _multipart_boundary(scope) if runtime.ready else None
        if boundary is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except ApiError as exc:  # BodyLimit's 413 for a streamed body over the limit
            await exc.response()(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        data = single_file_part(body, boundary)
        if not data or len(data) > runtime.settings.max_upload_bytes:
            await self.app(scope, _replay(body, receive), send)
            return

        async def upload(_fetcher: ImageFetcher, _timings: Timings) -> bytes:
            return data

        try:
            # classify checks readiness again: a shutdown may have begun while the body came in.
            response = await classify(runtime, upload)
        except ApiError as exc:
            response = exc.response()
        await response(scope, receive, send)


def _multipart_boundary(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value[:19].lower() != b"multipart/form-data":
                return None
            return boundary_of(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then whatever the connection says next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
