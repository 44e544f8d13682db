"""One error shape for every failure: `{"error": "<code>", "detail": "<human text>"}`.

Client input never yields a 5xx. The codes and their statuses:

| status | codes |
|---|---|
| 400 | `empty_body`, `empty` (empty image), `missing_file`, `invalid_multipart`: the request's structure |
| 403 | `url_not_allowed`: scheme, host or resolved address refused by the allowlist |
| 404, 405 | `not_found`, `method_not_allowed` |
| 413 | `payload_too_large` (request body; nginx uses it too), `image_too_large` (declared pixels), |
|     | `url_too_large` (fetched image) |
| 415 | `unsupported_media_type` (request Content-Type), `unsupported_type` (image format) |
| 422 | `invalid_json`, `invalid_request` (JSON of the wrong shape), `invalid_url`, `not_an_image`, |
|     | `truncated_image`, `corrupt_image`, `invalid_image`, `url_unreachable`, `url_timeout` |
| 503 | `not_ready`: the model is still loading |
| 500 | `internal`: a bug or a failed model call, never client input |

`url_unreachable` and `url_timeout` are 422, not 502/504: the URL the client chose gave no image, and a 5xx
would count against the server in load tests (and make nginx retry it on every replica).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PAYLOAD_TOO_LARGE = "payload_too_large"
"""The code of a 413 for an oversize request body; nginx's own 413 (nginx.conf.template) uses it too."""


class ApiError(Exception):
    """A failure answered with `status` and the standard error body."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _code_for_status(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.detail)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )
    return error_response(422, "invalid_request", problems or "invalid request")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, _code_for_status(exc.status_code)
    )
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", f"{type(exc).__name__}: {exc}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
