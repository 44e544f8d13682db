"""One error shape for every failure: `{"error": "<code>", "detail": "<human text>"}`.

Client input never yields a 5xx. `STATUS` below is the one list of codes and their HTTP statuses: a raise
names only its code (`raise ApiError("not_ready", "...")`), the status comes from the table, and the
schema's error descriptions (`MEANING`) sit beside it.

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

STATUS: dict[str, int] = {
    # 400: the request's structure
    "empty_body": 400,
    "empty": 400,  # an empty image (preprocess.ImageError)
    "missing_file": 400,
    "invalid_multipart": 400,
    # 403: scheme, host or resolved address refused by the allowlist
    "url_not_allowed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    # 413: the request body (nginx answers it too), the image's declared pixels, the fetched image
    PAYLOAD_TOO_LARGE: 413,
    "image_too_large": 413,
    "url_too_large": 413,
    # 415: the request's Content-Type, the image's format
    "unsupported_media_type": 415,
    "unsupported_type": 415,
    # 422: not a usable image or request
    "invalid_json": 422,
    "invalid_request": 422,  # JSON of the wrong shape
    "invalid_url": 422,
    "not_an_image": 422,
    "truncated_image": 422,
    "corrupt_image": 422,
    "invalid_image": 422,  # a decoder failed outside ImageError: still the input's fault
    "url_unreachable": 422,
    "url_timeout": 422,
    # 503: the model is still loading, or this worker is shutting down (nginx retries another replica)
    "not_ready": 503,
    # 500: a bug or a failed model call, never client input
    "internal": 500,
}
"""Every error code the service answers, with its HTTP status."""

MEANING: dict[int, str] = {
    400: "The request's structure: no body, an empty image, no multipart field `file`, broken multipart",
    403: "`img_url` names a scheme, host or address that CLASSIFIER_URL_ALLOWLIST refuses",
    413: "Too large: the request body (`payload_too_large`, also nginx's own answer), the image's pixels "
    "(`image_too_large`) or the fetched image (`url_too_large`)",
    415: "A request Content-Type the endpoint does not take, or an image format it cannot decode",
    422: "Not a usable image or request: not an image, truncated or corrupt, invalid JSON or URL, a URL "
    "that gave no image",
    503: "The model is still loading, or this worker is shutting down",
}
"""What each error status means, for the schema's responses."""


class ApiError(Exception):
    """A failure answered with the standard error body; its status is `STATUS[code]`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = STATUS[code]
        self.code = code
        self.detail = detail

    def response(self) -> JSONResponse:
        return _error_body(self.status, self.code, self.detail)


def _error_body(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _code_for_status(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )
    return ApiError("invalid_request", problems or "invalid request").response()


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # Starlette's own answers (404, 405, ...): their status is the exception's, the code its phrase.
    code = _code_for_status(exc.status_code)
    response = _error_body(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return ApiError("internal", f"{type(exc).__name__}: {exc}").response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
