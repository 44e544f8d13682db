"""Image bytes -> uint8 RGB array at the model's input size, or an ImageError saying what is wrong.

Steps, in order:
1. Identify the format from the bytes (Pillow), accepting JPEG (and MPO, the multi-picture JPEG that many
   cameras write), PNG, BMP, WebP and GIF; any other image format is "unsupported_type", and bytes Pillow
   cannot identify at all are "not_an_image".
2. Refuse images whose header declares more than `max_pixels` before decoding them ("image_too_large"), so
   a small file cannot expand to gigabytes (decompression bomb).
3. JPEG: draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale straight away, never below the target
   size. decode_image on a 1920x1080 JPEG took 6.5 ms of CPU with it and 35 ms without (640x480: 2.2 vs
   4.1 ms; measured on this project's 2-vCPU machine): less to decode, and far less to resize.
4. Apply the EXIF orientation, so a phone photo stored sideways is classified upright.
5. Convert any mode to RGB: alpha (RGBA, LA, PA, P or L with a transparent colour) composited on white, as
   a viewer shows it on a white page; 16-bit and 32-bit greyscale scaled down to 8 bits, not clipped.
6. Resize the whole image to the model's size with bilinear filtering. No centre crop: the aspect ratio
   is not kept, as in the TF Hub tutorial and the fixture model's reference results ("plain RGB resize").

GIF and WebP animations contribute their first frame.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# Pillow opens MPO (the multi-picture JPEG many cameras write) through its JPEG plugin, as format "MPO".
SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF")
MAX_PIXELS = 50_000_000
"""Largest declared width x height accepted (pixels): a 50 MP photo; about 150 MB once decoded to RGB."""

WHITE = (255, 255, 255)
# File signatures of the accepted formats: bytes that start like one but fail to open are a broken image
# (e.g. cut inside its header), not "not an image".
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


def _starts_like_supported_image(data: bytes) -> bool:
    if data.startswith(_SIGNATURES):
        return True
    # BMP's 2-byte signature alone matches text; its header also stores a reserved zero field at 6..10.
    if data.startswith(b"BM") and data[6:10] == b"\0\0\0\0":
        return True
    return data.startswith(b"RIFF") and data[8:12] == b"WEBP"


class ImageError(ValueError):
    """Input bytes that cannot become a model input; `code` is a stable machine-readable reason.

    Codes: empty, not_an_image, unsupported_type, image_too_large, truncated_image, corrupt_image.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def decode_image(data: bytes, size: tuple[int, int], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode `data` into a uint8 RGB array of shape [height, width, 3] for `size` = (height, width)."""
    if not data:
        raise ImageError("empty", "the image is empty (0 bytes)")
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            "image_too_large", f"{width}x{height} pixels is more than the {max_pixels} pixels accepted"
        )
    target_height, target_width = size
    if image.format in ("JPEG", "MPO"):
        # Asked for a square of the larger side: the EXIF rotation below may swap width and height.
        side = max(target_height, target_width)
        image.draft("RGB", (side, side))
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", str(exc)) from exc
    except EOFError as exc:
        raise ImageError("truncated_image", f"the {image.format} data ends early: {exc}") from exc
    except OSError as exc:
        # Pillow reports a short file as "image file is truncated" (JPEG, PNG) or similar.
        message = str(exc)
        if "truncated" in message.lower():
            raise ImageError("truncated_image", f"the {image.format} data ends early: {message}") from exc
        raise ImageError("corrupt_image", f"the {image.format} data cannot be decoded: {message}") from exc
    except Exception as exc:  # untrusted bytes: any decoder failure is the input's fault, never a 500
        raise ImageError("corrupt_image", f"the {image.format} data cannot be decoded: {exc}") from exc
    image = _apply_exif_orientation(image)
    rgb = to_rgb(image)
    if rgb.size != (target_width, target_height):
        rgb = rgb.resize((target_width, target_height), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", str(exc)) from exc
    except UnidentifiedImageError:
        if _starts_like_supported_image(data):
            raise ImageError(
                "corrupt_image",
                "the data starts like a JPEG, PNG, BMP, WebP or GIF but its header is unreadable",
            ) from None
    except Exception as exc:  # a recognised format whose header is broken
        raise ImageError("corrupt_image", f"the image header cannot be read: {exc}") from exc
    # Not one of ours: ask every Pillow plugin (header only, nothing is decoded) to tell an image in another
    # format from bytes that are no image at all.
    try:
        with Image.open(io.BytesIO(data)) as other:
            found = other.format or "unknown"
    except Exception:
        raise ImageError("not_an_image", "the data is not an image Pillow recognises") from None
    raise ImageError("unsupported_type", f"{found} images are not accepted; send JPEG, PNG, BMP, WebP or GIF")


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception as exc:  # malformed EXIF is not worth rejecting a decodable picture for
        log.debug("ignoring unreadable EXIF orientation: %s", exc)
        return image
    return transposed if transposed is not None else image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, with transparency composited on white and high bit depths scaled down."""
    mode = image.mode
    # A palette, grey or RGB PNG (or GIF) can name one transparent colour instead of carrying alpha.
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if mode == "RGB" and not has_alpha:
        return image
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(image), mode="L").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError("unsupported_type", f"images in mode {mode} cannot be converted to RGB") from exc


def _scale_to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit (I;16*), 32-bit integer (I) or float (F) greyscale -> 8 bits.

    I;16 is 0..65535 by definition and maps by /257 (65535 -> 255). I and F carry no declared range: values
    already in 0..255 (I) or 0..1 (F) are taken as 8-bit or normalised data, larger integers up to 65535 as
    16-bit data (how Pillow opens some 16-bit PNGs); anything else is stretched from its own min..max.
    """
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if image.mode == "F" and low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            scaled = values
        elif image.mode == "I" and low >= 0.0 and high <= 65535.0:
            scaled = values / 257.0
        else:
            scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
