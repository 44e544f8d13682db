"""Every bad input gets a 4xx with {"error", "detail"}, never a 5xx, and the service stays ready."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
from PIL import Image

from classifier.errors import PAYLOAD_TOO_LARGE
from tests.classifier.helpers import AppFactory, jpeg_bytes, serve
from tests.classifier.image_server import ImageServer, image_server

pytestmark = [pytest.mark.asyncio, pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]

MAX_UPLOAD = 20_000
JPEG = jpeg_bytes((90, 90, 200), size=(64, 64))


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt)
    return buffer.getvalue()


def big_noise_jpeg(min_bytes: int) -> bytes:
    side = 64
    while True:
        pixels = np.random.default_rng(3).integers(0, 256, (side, side, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
        if buffer.tell() >= min_bytes:
            return buffer.getvalue()
        side *= 2


def bomb_png() -> bytes:
    # 12000 x 12000 one-bit pixels: a few kB of file that would decode to 430 MB of RGB.
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")
    return buffer.getvalue()


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@dataclass
class Case:
    status: int
    error: str
    path: str = "/predict"
    kwargs: dict[str, object] = field(default_factory=dict)


def multipart(data: bytes, *, field_name: str = "file", ctype: str = "image/jpeg") -> dict[str, object]:
    return {"files": {field_name: ("upload", data, ctype)}}


def raw(data: bytes, ctype: str) -> dict[str, object]:
    return {"content": data, "headers": {"content-type": ctype}}


NOISE_JPEG = big_noise_jpeg(40_000)

UPLOAD_CASES: dict[str, Case] = {
    "not an image": Case(422, "not_an_image", kwargs=multipart(b"%PDF-1.4 definitely not a picture" * 10)),
    "truncated jpeg": Case(422, "truncated_image", kwargs=multipart(NOISE_JPEG[:15_000])),
    "corrupt jpeg header": Case(422, "corrupt_image", kwargs=multipart(b"\xff\xd8\xff\xe0" + bytes(1024))),
    "empty body": Case(400, "empty_body", kwargs=raw(b"", "image/jpeg")),
    "empty multipart body": Case(400, "empty_body", kwargs=raw(b"", "multipart/form-data; boundary=x")),
    "empty file": Case(400, "empty_body", kwargs=multipart(b"")),
    "missing file field": Case(400, "missing_file", kwargs=multipart(JPEG, field_name="image")),
    "file sent as a text field": Case(
        400,
        "missing_file",
        kwargs={"data": {"file": "not-a-file"}, "files": {"other": ("a", b"1", "text/plain")}},
    ),
    "broken multipart": Case(
        400,
        "invalid_multipart",
        kwargs={
            "content": b"--other\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\nabc",
            "headers": {"content-type": "multipart/form-data"},
        },
    ),
    "unsupported request type": Case(415, "unsupported_media_type", kwargs=raw(JPEG, "text/plain")),
    "form-urlencoded": Case(415, "unsupported_media_type", kwargs={"data": {"file": "x"}}),
    "no content type": Case(415, "unsupported_media_type", kwargs={"content": JPEG}),
    "unsupported image format": Case(415, "unsupported_type", kwargs=multipart(image_bytes("TIFF"))),
    "decompression bomb": Case(413, "image_too_large", kwargs=multipart(bomb_png(), ctype="image/png")),
    # Over the upload limit plus the multipart allowance (64 KiB by default).
    "over size, declared": Case(
        413, PAYLOAD_TOO_LARGE, kwargs=multipart(big_noise_jpeg(MAX_UPLOAD + 70_000))
    ),
    # Under the body limit (which leaves room for multipart framing) but over the image limit.
    "over size, raw body just over": Case(
        413, PAYLOAD_TOO_LARGE, kwargs=raw(NOISE_JPEG[: MAX_UPLOAD + 1], "image/jpeg")
    ),
}

URL_CASES: dict[str, Case] = {
    "invalid json": Case(422, "invalid_json", "/predict/tf", {"content": b'{"img_url": ', "headers": {}}),
    "json not an object": Case(422, "invalid_request", "/predict/tf", {"json": ["http://nginx/a.jpg"]}),
    "missing img_url": Case(422, "invalid_request", "/predict/tf", {"json": {"url": "http://nginx/a.jpg"}}),
    "img_url not a string": Case(422, "invalid_request", "/predict/tf", {"json": {"img_url": 42}}),
    "empty img_url": Case(422, "invalid_request", "/predict/tf", {"json": {"img_url": ""}}),
    "empty body": Case(400, "empty_body", "/predict/tf", raw(b"", "application/json")),
    "form instead of json": Case(415, "unsupported_media_type", "/predict/tf", {"data": {"img_url": "x"}}),
    "huge json": Case(
        413, PAYLOAD_TOO_LARGE, "/predict/tf", {"json": {"img_url": "http://nginx/" + "a" * 100_000}}
    ),
    "host not allowed": Case(
        403, "url_not_allowed", "/predict/tf", {"json": {"img_url": "http://example.com/a.jpg"}}
    ),
    "metadata address": Case(
        403,
        "url_not_allowed",
        "/predict/tf",
        {"json": {"img_url": "http://169.254.169.254/latest/meta-data/"}},
    ),
    "file scheme": Case(403, "url_not_allowed", "/predict/tf", {"json": {"img_url": "file:///etc/passwd"}}),
    "relative url": Case(422, "invalid_url", "/predict/tf", {"json": {"img_url": "/images/cat.jpg"}}),
}


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with image_server(JPEG) as running:
        yield running


def url_case(server: ImageServer, path: str, status: int, error: str) -> Case:
    return Case(status, error, "/predict/tf", {"json": {"img_url": server.url(path)}})


async def check(client: httpx.AsyncClient, case: Case) -> None:
    response = await client.post(case.path, **case.kwargs)  # type: ignore[arg-type]
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == case.error, body
    assert isinstance(body["detail"], str) and body["detail"]
    # The service is still ready and still answers a good request.
    assert (await client.get("/readyz")).status_code == 200
    good = await client.post("/predict", files={"file": ("ok.jpg", JPEG, "image/jpeg")})
    assert good.status_code == 200, good.text


@pytest.mark.parametrize("name", list(UPLOAD_CASES))
async def test_bad_uploads(app_factory: AppFactory, name: str) -> None:
    async with serve(app_factory(max_upload_bytes=MAX_UPLOAD)) as client:
        await check(client, UPLOAD_CASES[name])


@pytest.mark.parametrize("name", list(URL_CASES))
async def test_bad_url_requests(app_factory: AppFactory, name: str) -> None:
    async with serve(app_factory()) as client:
        await check(client, URL_CASES[name])


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/text", 422, "not_an_image"),
        ("/missing.jpg", 422, "url_unreachable"),
        ("/big-declared", 413, "url_too_large"),
        ("/big-chunked", 413, "url_too_large"),
        ("/slow", 422, "url_timeout"),
        ("/redirect?to=http://example.com/a.jpg", 403, "url_not_allowed"),
    ],
)
async def test_bad_urls(
    app_factory: AppFactory, server: ImageServer, path: str, status: int, error: str
) -> None:
    app = app_factory(url_allowlist=["127.0.0.1"], url_max_bytes=MAX_UPLOAD, url_timeout_s=0.5)
    async with serve(app) as client:
        await check(client, url_case(server, path, status, error))


async def test_oversized_chunked_upload_is_cut_off(app_factory: AppFactory) -> None:
    # No Content-Length: the limit applies while the body streams in.
    body = big_noise_jpeg(MAX_UPLOAD + 100_000)
    async with serve(app_factory(max_upload_bytes=MAX_UPLOAD)) as client:
        response = await client.post("/predict", content=chunks(body), headers={"content-type": "image/jpeg"})
        assert response.status_code == 413, response.text
        assert response.json()["error"] == PAYLOAD_TOO_LARGE
        assert (await client.get("/readyz")).status_code == 200


async def test_upload_exactly_at_the_limit_is_accepted(app_factory: AppFactory) -> None:
    async with serve(app_factory(max_upload_bytes=len(JPEG))) as client:
        response = await client.post("/predict", content=JPEG, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "WEBP"])
async def test_other_accepted_formats(app_factory: AppFactory, fmt: str) -> None:
    async with serve(app_factory()) as client:
        response = await client.post(
            "/predict", files={"file": (f"x.{fmt.lower()}", image_bytes(fmt), "image/*")}
        )
    assert response.status_code == 200, response.text


async def test_wrong_method_and_path_use_the_error_shape(client: httpx.AsyncClient) -> None:
    wrong_method = await client.get("/predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    missing = await client.post("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "Not Found"}
