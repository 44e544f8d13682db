"""HTTP endpoints. Request bodies are read by hand rather than through FastAPI parameters, so that every
malformed input gets its own 4xx code (see errors.py) and the multipart parse counts in `total`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifier.errors import PAYLOAD_TOO_LARGE, ApiError, error_response
from classifier.fetch import ImageFetcher
from classifier.metrics import Metrics
from classifier.multipart import boundary_of, single_file_part
from classifier.predictor import Predictor
from classifier.schemas import (
    BatchingInfo,
    ErrorBody,
    Links,
    ModelInfo,
    Prediction,
    ServiceInfo,
    Status,
    ThreadInfo,
    UrlRequest,
)
from classifier.settings import Settings
from classifier.timing import Timings, server_timing

SERVICE_NAME = "mlserve-loadlab classifier"
# An {"img_url": ...} body is tiny; anything bigger is not what this endpoint takes.
JSON_BODY_LIMIT_BYTES = 16 * 1024


@dataclass
class Runtime:
    """What the endpoints need, filled in by the lifespan once the model is loaded and warmed."""

    settings: Settings
    metrics: Metrics
    hostname: str
    predictor: Predictor | None = None
    fetcher: ImageFetcher | None = None
    model_name: str = ""
    """Where the model came from (manifest.json's `source` when the image build wrote one) or its path."""
    ready: bool = False


def body_limit(settings: Settings, path: str) -> int:
    if path.rstrip("/") == "/predict":
        return settings.max_upload_bytes + settings.multipart_overhead_bytes
    return JSON_BODY_LIMIT_BYTES


router = APIRouter()

# What each error status means, for the schema; errors.py lists every code.
_ERROR_MEANINGS = {
    400: "The request's structure: no body, an empty image, no multipart field `file`, broken multipart",
    403: "`img_url` names a scheme, host or address that CLASSIFIER_URL_ALLOWLIST refuses",
    413: "Too large: the request body (`payload_too_large`, also nginx's own answer), the image's pixels "
    "(`image_too_large`) or the fetched image (`url_too_large`)",
    415: "A request Content-Type the endpoint does not take, or an image format it cannot decode",
    422: "Not a usable image or request: not an image, truncated or corrupt, invalid JSON or URL, a URL "
    "that gave no image",
    503: "The model is still loading, or this worker is shutting down",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _ERROR_MEANINGS[status]} for status in statuses}


# Both upload forms carry an image; declaring it (encoding) lets schema-driven clients and fuzzers know.
_IMAGE_BYTES = {"type": "string", "format": "binary", "minLength": 1}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {**_IMAGE_BYTES, "description": "The image (JPEG, PNG, ...)"}},
                },
                "encoding": {"file": {"contentType": "image/*"}},
            },
            "image/*": {"schema": _IMAGE_BYTES},
            "application/octet-stream": {"schema": _IMAGE_BYTES},
        },
    }
}
_URL_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": UrlRequest.model_json_schema()}},
    }
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _ready(runtime: Runtime) -> tuple[Predictor, ImageFetcher]:
    if not runtime.ready or runtime.predictor is None or runtime.fetcher is None:
        raise ApiError(503, "not_ready", "the model is still loading")
    return runtime.predictor, runtime.fetcher


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@router.get("/", response_model=ServiceInfo)
async def index(request: Request) -> ServiceInfo:
    """What this service is and where to go next; answers 200 also while the model loads."""
    runtime = _runtime(request)
    app = request.app
    return ServiceInfo(
        service=SERVICE_NAME,
        model=runtime.model_name if runtime.ready else None,
        backend=runtime.settings.backend,
        ready=runtime.ready,
        links=Links(
            docs=app.docs_url,
            openapi=app.openapi_url,
            model=app.url_path_for("model"),
            predict=app.url_path_for("predict_upload"),
            predict_tf=app.url_path_for("predict_url"),
        ),
    )


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    return Status(status="alive")


@router.get("/readyz", response_model=Status, responses=_errors(503))
async def readyz(request: Request) -> Response:
    if not _runtime(request).ready:
        return error_response(503, "not_ready", "the model is still loading")
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format", "content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    body, content_type = _runtime(request).metrics.render()
    return Response(body, media_type=content_type)


@router.get("/model", response_model=ModelInfo, responses=_errors(503))
async def model(request: Request) -> ModelInfo:
    runtime = _runtime(request)
    predictor, _fetcher = _ready(runtime)
    settings = runtime.settings
    return ModelInfo(
        model=runtime.model_name,
        model_path=str(settings.model_path),
        labels_path=str(settings.labels_path),
        backend=predictor.backend.name,
        input_size=predictor.input_size,
        label_count=len(predictor.labels),
        top_k=predictor.top_k,
        batching=BatchingInfo(
            enabled=predictor.batcher.max_batch_size > 1,
            max_batch_size=predictor.batcher.max_batch_size,
            max_batch_delay_ms=predictor.batcher.max_delay_s * 1000.0,
        ),
        threads=ThreadInfo(
            intra_op=settings.threads, inter_op=settings.inter_op_threads, decode=settings.decode_threads
        ),
        workers_per_replica=settings.workers,
        pid=os.getpid(),
        hostname=runtime.hostname,
        backend_info=predictor.backend.info(),
    )


@router.post(
    "/predict",
    response_model=Prediction,
    responses=_errors(400, 413, 415, 422, 503),
    openapi_extra=_UPLOAD_BODY,
)
async def predict_upload(request: Request) -> Response:
    """Classify an uploaded image: multipart field `file`, or the raw bytes as `image/*` or octet-stream."""
    timings = Timings()
    runtime = _runtime(request)
    predictor, _fetcher = _ready(runtime)
    data = await _read_upload(request, runtime.settings.max_upload_bytes)
    answer = await predictor.predict(data, timings)
    return _prediction_response(runtime, answer, timings)


@router.post(
    "/predict/tf",
    response_model=Prediction,
    responses=_errors(400, 403, 413, 415, 422, 503),
    openapi_extra=_URL_BODY,
)
@router.post("/predict/tf/", include_in_schema=False, name="predict_url_trailing_slash")
async def predict_url(request: Request) -> Response:
    """Classify the image at `img_url` (the tutorial's endpoint); only allowlisted hosts are fetched."""
    timings = Timings()
    runtime = _runtime(request)
    predictor, fetcher = _ready(runtime)
    payload = await _read_url_request(request)
    fetch_started = time.perf_counter()
    data = await fetcher.fetch(payload.img_url)
    timings.add("fetch", time.perf_counter() - fetch_started)
    answer = await predictor.predict(data, timings)
    return _prediction_response(runtime, answer, timings)


class UploadFastPath:
    """`POST /predict` with the one body shape nearly every client sends (a single multipart file part named
    `file`, within the size limit), answered without the router: the same reads, predictor and answer as
    `predict_upload`, minus Starlette's and FastAPI's per-request machinery (routing, the exception and
    exit-stack layers, the Request object, dependency solving). That machinery cost 0.12 ms of event-loop
    CPU per request alone and about 0.2 ms between model calls on the same core (bench/README.md). Anything
    else, an empty or oversized file included, goes on to the app with the body it has read, so every 4xx
    and the schema stay the route's.

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
            await error_response(exc.status, exc.code, exc.detail)(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        data = single_file_part(body, boundary)
        if not data or len(data) > runtime.settings.max_upload_bytes:
            await self.app(scope, _replay(body, receive), send)
            return
        timings = Timings()
        try:
            predictor, _fetcher = _ready(runtime)  # still: a shutdown may have begun while the body came in
            answer = await predictor.predict(data, timings)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.detail)
        else:
            response = _prediction_response(runtime, answer, timings)
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


def _prediction_response(runtime: Runtime, answer: dict[str, object], timings: Timings) -> Response:
    stages = timings.finish()
    runtime.metrics.observe_stages(stages)
    # `status_code` in the body: the tutorial's clients check it (schemas.Prediction).
    return JSONResponse({**answer, "status_code": 200}, headers={"Server-Timing": server_timing(stages)})


async def _read_upload(request: Request, max_bytes: int) -> bytes:
    media = _media_type(request)
    if request.headers.get("content-length") == "0":
        raise ApiError(400, "empty_body", "the request has no body: send the image as multipart field `file`")
    if media == "multipart/form-data":
        data = await _read_multipart_file(request)
    elif media.startswith("image/") or media == "application/octet-stream":
        data = await request.body()
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r} is not accepted: use multipart/form-data (field `file`) "
            "or the raw image with an image/* type",
        )
    if not data:
        raise ApiError(400, "empty_body", "the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ApiError(
            413, PAYLOAD_TOO_LARGE, f"the image is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    return data


async def _read_multipart_file(request: Request) -> bytes:
    # The common single-file body was answered by UploadFastPath; what reaches here is any other shape (or
    # an empty or oversized file, which the checks in _read_upload answer): Starlette's parser. The body is
    # bounded by the BodyLimit middleware.
    try:
        form = await request.form(max_files=1, max_fields=16)
    except (MultiPartException, StarletteHTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", None) or str(exc)
        raise ApiError(400, "invalid_multipart", f"the multipart body cannot be parsed: {detail}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "missing_file", "the multipart body has no file field named `file`")
        return await upload.read()
    finally:
        await form.close()


async def _read_url_request(request: Request) -> UrlRequest:
    media = _media_type(request)
    # No Content-Type at all is taken as JSON (curl -d without -H); any other explicit type is refused.
    if media and media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f'Content-Type {media!r} is not accepted: send JSON {{"img_url": "..."}}',
        )
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "empty_body", 'the request has no body: send JSON {"img_url": "..."}')
    try:
        return UrlRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise ApiError(422, "invalid_json", f"the body is not valid JSON: {errors[0]['msg']}") from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in errors
        )
        raise ApiError(422, "invalid_request", problems) from None
