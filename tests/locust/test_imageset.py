from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pytest

from tests.locust._modules import IMAGES_DIR, load

imageset = load("imageset")


def test_multipart_body_parses_as_one_file_part() -> None:
    content = b"\xff\xd8\xff\xe0 not really a jpeg \r\n--\r\n"
    upload = imageset.multipart_upload("file", "cat.jpg", content, "image/jpeg")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + upload.content_type.encode() + b"\r\n\r\n" + upload.body
    )
    parts = list(message.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "cat.jpg"
    assert part.get_content_type() == "image/jpeg"
    assert part.get_payload(decode=True) == content


def test_list_images_filters_and_sorts(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "notes.md", "c.webp", "script.py"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in imageset.list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp"]
    assert [p.name for p in imageset.list_images(tmp_path, "*.png")] == ["a.png"]
    with pytest.raises(FileNotFoundError, match="no image files"):
        imageset.list_images(tmp_path, "*.gif")
    with pytest.raises(FileNotFoundError, match="LOCUST_IMAGES_DIR"):
        imageset.list_images(tmp_path / "missing")


def test_repo_images_have_benchmark_sizes_and_provenance() -> None:
    from PIL import Image

    files = imageset.list_images(IMAGES_DIR)
    sizes = {p.name: Image.open(p).size for p in files}
    assert sizes["chelsea_640x480.jpg"] == (640, 480)
    assert sizes["rocket_1920x1080.jpg"] == (1920, 1080)
    assert {Image.open(p).format for p in files} >= {"JPEG", "PNG", "WEBP"}
    assert sum(p.stat().st_size for p in files) < 3_000_000
    provenance = (IMAGES_DIR / "PROVENANCE.md").read_text()
    for p in files:
        row = next((line for line in provenance.splitlines() if line.startswith(f"| {p.name} |")), None)
        assert row is not None, f"{p.name} missing from PROVENANCE.md"
        assert "CC0" in row or "Public domain" in row
        assert f"| {p.stat().st_size} |" in row, f"{p.name} changed since PROVENANCE.md was written"
