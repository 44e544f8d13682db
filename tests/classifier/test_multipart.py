"""The single-file multipart fast path: what it takes, and that it hands everything else to Starlette."""

from __future__ import annotations

import httpx
import pytest

from classifier.multipart import boundary_of, single_file_part
from tests.classifier.fake_backend import FakeBackend
from tests.classifier.helpers import AppFactory, jpeg_bytes, serve

BOUNDARY = b"b0undary-123"
DATA = b"\xff\xd8\xff\xe0 image bytes \r\n with CRLF and -- dashes \r\n--b0undar"


def body(
    *parts: tuple[bytes, bytes], boundary: bytes = BOUNDARY, preamble: bytes = b"", end: bytes = b"--\r\n"
) -> bytes:
    chunks = [preamble]
    for headers, data in parts:
        chunks += [b"--" + boundary + b"\r\n", headers, b"\r\n\r\n", data, b"\r\n"]
    chunks += [b"--" + boundary + end]
    return b"".join(chunks)


FILE_HEADERS = b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg'


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("multipart/form-data; boundary=b0undary-123", BOUNDARY),
        ('multipart/form-data; boundary="b0undary-123"', BOUNDARY),
        ("multipart/form-data;boundary=b0undary-123; charset=utf-8", BOUNDARY),
        ("multipart/form-data", None),
        ("multipart/form-data; xboundary=abc", None),
        ("multipart/form-data; boundary=" + "x" * 71, None),
    ],
)
def test_boundary_of(content_type: str, expected: bytes | None) -> None:
    assert boundary_of(content_type) == expected


@pytest.mark.parametrize("end", [b"--", b"--\r\n"])
def test_one_file_part_is_found(end: bytes) -> None:
    assert single_file_part(body((FILE_HEADERS, DATA), end=end), BOUNDARY) == DATA
    assert single_file_part(body((FILE_HEADERS, b"")), BOUNDARY) == b""
    reordered = b'content-disposition: form-data; filename="a.jpg"; name="file"'
    assert single_file_part(body((reordered, DATA)), BOUNDARY) == DATA


@pytest.mark.parametrize(
    "case",
    [
        body((FILE_HEADERS, DATA), preamble=b"preamble\r\n"),
        body((FILE_HEADERS, DATA), (b'Content-Disposition: form-data; name="x"', b"1")),
        body((b'Content-Disposition: form-data; name="x"', b"1"), (FILE_HEADERS, DATA)),
        body((b'Content-Disposition: form-data; name="image"; filename="a.jpg"', DATA)),
        body((b'Content-Disposition: form-data; name="file"', DATA)),  # a field, not a file
        body((b'Content-Disposition: form-data; name="file"; filename="a\\".jpg"', DATA)),
        body((b'Content-Disposition: form-data; name="file"; name="file"; filename="a"', DATA)),
        body((FILE_HEADERS + b"\r\n" + FILE_HEADERS, DATA)),
        body((b"Content-Type: image/jpeg", DATA)),
        body((b"not a header line\r\n" + FILE_HEADERS, DATA)),
        body((FILE_HEADERS, DATA), end=b"--\r\nepilogue"),
        body((FILE_HEADERS, DATA), end=b""),
        body((FILE_HEADERS, DATA))[:-20],
        body((FILE_HEADERS, DATA), boundary=b"other"),
    ],
)
def test_every_other_shape_goes_to_the_full_parser(case: bytes) -> None:
    assert single_file_part(case, BOUNDARY) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("parts", "status"),
    [
        ([(FILE_HEADERS, "JPEG")], 200),  # fast path
        ([(b'Content-Disposition: form-data; name="x"', b"1"), (FILE_HEADERS, "JPEG")], 200),  # Starlette's
        ([(b'Content-Disposition: form-data; name="image"; filename="a.jpg"', "JPEG")], 400),
    ],
)
async def test_fast_and_full_parser_give_the_same_answers(
    app_factory: AppFactory, parts: list[tuple[bytes, bytes | str]], status: int
) -> None:
    image = jpeg_bytes((10, 200, 30))
    content = body(*((h, image if d == "JPEG" else d) for h, d in parts))  # type: ignore[misc]
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
    async with serve(app_factory(FakeBackend())) as client:
        response = await client.post("/predict", content=content, headers=headers)
        reference = await client.post("/predict", content=image, headers={"content-type": "image/jpeg"})
    assert response.status_code == status
    if status == 200:
        assert response.json()["top_k"] == reference.json()["top_k"]
    else:
        assert response.json()["error"] == "missing_file"


@pytest.mark.asyncio
async def test_httpx_uploads_take_the_fast_path(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.requests import Request

    async def no_full_parser(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("Starlette's multipart parser ran")

    monkeypatch.setattr(Request, "form", no_full_parser)
    async with serve(app_factory(FakeBackend())) as client:
        response = await client.post("/predict", files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")})
    assert response.status_code == 200


@pytest.mark.asyncio
async def test_the_common_upload_is_answered_without_the_route_and_alike(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api.UploadFastPath answers a single-file upload itself; any other shape reaches the route, and both
    answers carry the same body, Server-Timing stages and headers."""
    import classifier.api as api

    routed: list[str] = []
    read_upload = api._read_upload

    async def counted(request: object, max_bytes: int) -> bytes:
        routed.append("route")
        return await read_upload(request, max_bytes)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "_read_upload", counted)
    image = jpeg_bytes((10, 200, 30))
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
    extra_field = (b'Content-Disposition: form-data; name="x"', b"1")
    async with serve(app_factory(FakeBackend())) as client:
        fast = await client.post("/predict", content=body((FILE_HEADERS, image)), headers=headers)
        assert routed == []
        two_parts = body(extra_field, (FILE_HEADERS, image))
        slow = await client.post("/predict", content=two_parts, headers=headers)
        assert routed == ["route"]
    assert fast.status_code == slow.status_code == 200
    assert fast.json() == slow.json()
    for name in ("content-type", "x-served-by"):
        assert fast.headers[name] == slow.headers[name]
    stages = [entry.split(";")[0].strip() for entry in fast.headers["server-timing"].split(",")]
    assert stages == [entry.split(";")[0].strip() for entry in slow.headers["server-timing"].split(",")]


@pytest.mark.asyncio
async def test_fast_path_keeps_the_body_limit_and_the_route_s_errors(app_factory: AppFactory) -> None:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}

    async def streamed(data: bytes) -> object:  # no Content-Length: BodyLimit counts as it arrives
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    big = body((FILE_HEADERS, b"\xff" * 40_000))
    app = app_factory(FakeBackend(), max_upload_bytes=1_000, multipart_overhead_bytes=100)
    async with serve(app) as client:

        async def upload(data: bytes) -> httpx.Response:
            return await client.post("/predict", content=body((FILE_HEADERS, data)), headers=headers)

        over = await client.post("/predict", content=streamed(big), headers=headers)
        empty, not_image, healthy = await upload(b""), await upload(b"%PDF" * 100), await upload(jpeg_bytes())
    assert (over.status_code, over.json()["error"]) == (413, "payload_too_large")
    assert (empty.status_code, empty.json()["error"]) == (400, "empty_body")
    assert (not_image.status_code, not_image.json()["error"]) == (422, "not_an_image")
    assert healthy.status_code == 200
