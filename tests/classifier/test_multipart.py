"""The single-file multipart fast path: what it takes, and that it hands everything else to Starlette."""

from __future__ import annotations

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
