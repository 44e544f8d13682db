"""HTTP endpoints. Request bodies are read by hand rather than through FastAPI parameters, so that every
malformed input gets its own 4xx code (see errors.py) and the multipart parse counts in `total`."""

from __future__ import annotations

import os
import time
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from classifier.classify import Runtime, classify
from classifier.errors import MEANING, PAYLOAD_TOO_LARGE, ApiError
from classifier.fetch import ImageFetcher
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
from classifier.timing import Timings

SERVICE_NAME = "mlserve-loadlab classifier"
# An {"img_url": ...} body is tiny; anything bigger is not what this endpoint takes.
JSON_BODY_LIMIT_BYTES = 16 * 1024


def body_limit(settings: Settings, path: str) -> int:
    if path.rstrip("/") == "/predict":
        return settings.max_upload_bytes + settings.multipart_overhead_bytes
    return JSON_BODY_LIMIT_BYTES


router = APIRouter()


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": MEANING[status]} for status in statuses}


# Both upload forms carry an image; declaring it (encoding) lets schema-driven clients and fuzzers know. JSON
# Schema cannot say "bytes that are a picture": the descriptions and the documented 422 (`not_an_image`) say
# it, and schemathesis.toml tells schemathesis' ST202 check, which reads neither.
_IMAGE_BYTES = {
    "type": "string",
    "format": "binary",
    "minLength": 1,
    "description": "The image: JPEG, PNG, BMP, WebP or GIF. Other bytes get 422 `not_an_image`.",
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": _IMAGE_BYTES},
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
    try:
        _runtime(request).loaded()
    except ApiError as exc:
        return exc.response()
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
    predictor, _fetcher = runtime.loaded()
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
            enabled=predictor.inference.max_batch_size > 1,
            max_batch_size=predictor.inference.max_batch_size,
            max_batch_delay_ms=predictor.inference.max_delay_s * 1000.0,
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
    """Classify an uploaded image: multipart field `file`, or the raw bytes as `image/*` or octet-stream.

    The common single-file upload is answered by middleware.UploadFastPath; both call `classify`."""
    runtime = _runtime(request)

    async def upload(_fetcher: ImageFetcher, _timings: Timings) -> bytes:
        return await _read_upload(request, runtime.settings.max_upload_bytes)

    return await classify(runtime, upload)


@router.post(
    "/predict/tf",
    response_model=Prediction,
    responses=_errors(400, 403, 413, 415, 422, 503),
    openapi_extra=_URL_BODY,
)
@router.post("/predict/tf/", include_in_schema=False, name="predict_url_trailing_slash")
async def predict_url(request: Request) -> Response:
    """Classify the image at `img_url` (the tutorial's endpoint); only allowlisted hosts are fetched."""
    return await classify(_runtime(request), partial(_fetch_url_image, request))


async def _fetch_url_image(request: Request, fetcher: ImageFetcher, timings: Timings) -> bytes:
    payload = await _read_url_request(request)
    fetch_started = time.perf_counter()
    data = await fetcher.fetch(payload.img_url)
    timings.add("fetch", time.perf_counter() - fetch_started)
    return data


async def _read_upload(request: Request, max_bytes: int) -> bytes:
    media = _media_type(request)
    if request.headers.get("content-length") == "0":
        raise ApiError("empty_body", "the request has no body: send the image as multipart field `file`")
    if media == "multipart/form-data":
        data = await _read_multipart_file(request)
    elif media.startswith("image/") or media == "application/octet-stream":
        data = await request.body()
    else:
        raise ApiError(
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r} is not accepted: use multipart/form-data (field `file`) "
            "or the raw image with an image/* type",
        )
    if not data:
        raise ApiError("empty_body", "the image is empty (0 bytes)")
    if len(data) > max_bytes:
        too_large = f"the image is {len(data)} bytes, over the limit of {max_bytes} bytes"
        raise ApiError(PAYLOAD_TOO_LARGE, too_large)
    return data


async def _read_multipart_file(request: Request) -> bytes:
    # The common single-file body was answered by middleware.UploadFastPath; what reaches here is any other
    # shape (or an empty or oversized file, which the checks in _read_upload answer): Starlette's parser. The
    # body is bounded by the BodyLimit middleware.
    try:
        form = await request.form(max_files=1, max_fields=16)
    except (MultiPartException, StarletteHTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", None) or str(exc)
        raise ApiError("invalid_multipart", f"the multipart body cannot be parsed: {detail}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError("missing_file", "the multipart body has no file field named `file`")
        return await upload.read()
    finally:
        await form.close()


async def _read_url_request(request: Request) -> UrlRequest:
    media = _media_type(request)
    # No Content-Type at all is taken as JSON (curl -d without -H); any other explicit type is refused.
    if media and media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            "unsupported_media_type",
            f'Content-Type {media!r} is not accepted: send JSON {{"img_url": "..."}}',
        )
    raw = await request.body()
    if not raw.strip():
        raise ApiError("empty_body", 'the request has no body: send JSON {"img_url": "..."}')
    try:
        return UrlRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise ApiError("invalid_json", f"the body is not valid JSON: {errors[0]['msg']}") from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in errors
        )
        raise ApiError("invalid_request", problems) from None
