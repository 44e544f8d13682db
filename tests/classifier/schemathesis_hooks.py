"""Real images for schemathesis wherever the API's schema says a body or multipart part is `image/*`.

JSON Schema can say "non-empty bytes" but not "a picture", so without this every generated upload is random
bytes that the classifier rightly refuses (422 not_an_image). The CLI loads it with
`SCHEMATHESIS_HOOKS=tests.classifier.schemathesis_hooks` (run from the repository root); the in-process
test imports it.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


def encode(width: int, height: int, colour: tuple[int, int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return buffer.getvalue()


channel = st.integers(0, 255)
images = st.builds(
    encode,
    st.integers(1, 300),
    st.integers(1, 300),
    st.tuples(channel, channel, channel),
    st.sampled_from(FORMATS),
)

# The upload's declared media types (classifier/api.py: _UPLOAD_BODY), each registered by its exact name.
for media_type in ("image/*", "application/octet-stream"):
    schemathesis.openapi.media_type(media_type, images)
