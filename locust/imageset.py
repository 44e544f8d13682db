"""The photos Locust sends: read once per test from a folder, multipart bodies encoded ahead of time.

Encoding the multipart body once per file, instead of once per request, keeps that copy off the load
generator's hot path (uploads are its most expensive requests). Kept free of Locust imports so tests can
use it without gevent monkey-patching their process.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


@dataclass(frozen=True)
class Upload:
    filename: str
    body: bytes  # the whole multipart/form-data request body
    content_type: str  # the request's Content-Type, with its boundary


def multipart_upload(field: str, filename: str, content: bytes, content_type: str) -> Upload:
    boundary = secrets.token_hex(16)
    while boundary.encode() in content:  # astronomically unlikely, but a clash would corrupt the body
        boundary = secrets.token_hex(16)
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return Upload(filename, body, f"multipart/form-data; boundary={boundary}")


def list_images(folder: str | os.PathLike[str], pattern: str = "*") -> list[Path]:
    """Image files in `folder` matching the glob `pattern`, sorted; other files (docs, scripts) ignored."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"images folder {root} does not exist (set --images-dir / LOCUST_IMAGES_DIR)")
    files = sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in CONTENT_TYPES)
    if not files:
        raise FileNotFoundError(
            f"no image files ({', '.join(sorted(CONTENT_TYPES))}) matching {pattern!r} in {root}"
        )
    return files


def load_uploads(files: list[Path], field: str = "file") -> list[Upload]:
    return [multipart_upload(field, p.name, p.read_bytes(), CONTENT_TYPES[p.suffix.lower()]) for p in files]
