"""decode_image: formats, modes, EXIF orientation, resizing, and the error code for each kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.backends import Backend
from classifier.preprocess import MAX_PIXELS, ImageError, decode_image, to_rgb
from tests.classifier.model_fixtures import (  # noqa: F401 (pytest finds fixtures by name)
    imagenet_dir_fixture,
    litert_imagenet_fixture,
)

SIZE = (224, 224)
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
# EXIF Orientation -> the transpose that makes the stored pixels upright (what ImageOps.exif_transpose does),
# and the one that turns upright pixels into what a camera with that orientation stores.
TO_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes, size: tuple[int, int] = SIZE) -> np.ndarray:
    array = decode_image(data, size)
    assert array.dtype == np.uint8
    assert array.shape == (*size, 3)
    return array


def assert_colour(array: np.ndarray, colour: tuple[int, int, int], tolerance: int = 0) -> None:
    difference = np.abs(array.astype(int) - np.array(colour)).max()
    assert difference <= tolerance, f"pixels differ from {colour} by up to {difference}"


def red_left_blue_right(width: int = 400, height: int = 100) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def palette_image() -> Image.Image:
    image = Image.new("P", (64, 48), 1)
    image.putpalette([*RED, *BLUE, 0, 255, 0] + [0] * (256 - 3) * 3)
    image.paste(2, (0, 0, 32, 48))  # left half: index 2 (green), right half: index 1 (blue)
    return image


# --- formats ---


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [
        ("JPEG", {"quality": 95}, 12),
        ("PNG", {}, 0),
        ("BMP", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("GIF", {}, 0),
    ],
)
def test_accepted_formats_decode_to_rgb_without_cropping(fmt: str, options: dict, tolerance: int) -> None:
    array = decode(encode(red_left_blue_right(), fmt, **options))
    # A 4:1 image squeezed into a square, not centre-cropped: the left half stays red, the right blue.
    assert_colour(array[:, :100], RED, tolerance)
    assert_colour(array[:, 124:], BLUE, tolerance)


def test_mpo_multi_picture_jpeg_is_accepted() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(
        buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 64))]
    )
    assert_colour(decode(buffer.getvalue()), RED, 4)


@pytest.mark.parametrize(("fmt", "options"), [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animations_give_their_first_frame(fmt: str, options: dict) -> None:
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
    assert_colour(decode(data), RED)


def test_output_has_the_requested_height_and_width() -> None:
    array = decode(encode(red_left_blue_right(), "PNG"), size=(96, 160))
    assert array.shape == (96, 160, 3)


# --- modes ---


def test_greyscale_and_bilevel_become_grey_rgb() -> None:
    assert_colour(decode(encode(Image.new("L", (40, 30), 77), "PNG")), (77, 77, 77))
    assert_colour(decode(encode(Image.new("L", (40, 30), 77), "JPEG", quality=95)), (77, 77, 77), 2)
    assert_colour(decode(encode(Image.new("1", (40, 30), 1), "PNG")), WHITE)
    assert_colour(decode(encode(Image.new("1", (40, 30), 0), "BMP")), (0, 0, 0))


def test_palette_images_use_their_palette() -> None:
    array = decode(encode(palette_image(), "PNG"))
    assert_colour(array[:, :100], (0, 255, 0))
    assert_colour(array[:, 124:], BLUE)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_composited_on_white(fmt: str) -> None:
    array = decode(encode(palette_image(), fmt, transparency=2))
    assert_colour(array[:, :100], WHITE)
    assert_colour(array[:, 124:], BLUE)


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("WEBP", {"lossless": True})])
def test_alpha_is_composited_on_white(fmt: str, options: dict) -> None:
    # Half-transparent red over white is pink; fully transparent anything is white.
    assert_colour(
        decode(encode(Image.new("RGBA", (40, 30), (*RED, 128)), fmt, **options)), (255, 127, 127), 1
    )
    assert_colour(decode(encode(Image.new("RGBA", (40, 30), (0, 0, 0, 0)), fmt, **options)), WHITE)
    assert_colour(decode(encode(Image.new("LA", (40, 30), (0, 0)), fmt, **options)), WHITE)
    assert_colour(decode(encode(Image.new("LA", (40, 30), (0, 255)), fmt, **options)), (0, 0, 0))


def test_a_transparent_colour_in_grey_and_rgb_pngs_is_white() -> None:
    assert_colour(decode(encode(Image.new("L", (40, 30), 50), "PNG", transparency=50)), WHITE)
    rgb = Image.new("RGB", (40, 30), (10, 20, 30))
    assert_colour(decode(encode(rgb, "PNG", transparency=(10, 20, 30))), WHITE)
    assert_colour(decode(encode(rgb, "PNG", transparency=(1, 2, 3))), (10, 20, 30))


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert_colour(decode(data), RED, 3)


def test_16_bit_png_is_scaled_down_not_clipped() -> None:
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16).repeat(4, axis=0).repeat(10, axis=1)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    array = decode(data, size=(4, 40))
    np.testing.assert_array_equal(array[0, ::10, 0], [0, 64, 128, 255])


@pytest.mark.parametrize(
    ("values", "mode", "expected"),
    [
        (np.array([[0, 40000, 65535]], np.int32), "I", [0, 156, 255]),  # 16-bit data in a 32-bit mode
        (np.array([[0, 100, 255]], np.int32), "I", [0, 100, 255]),  # 8-bit data in a 32-bit mode
        (np.array([[0.0, 0.5, 1.0]], np.float32), "F", [0, 128, 255]),  # normalised floats
        (np.array([[-1.0, 0.0, 1.0]], np.float32), "F", [0, 128, 255]),  # anything else: its own min..max
    ],
)
def test_32_bit_integer_and_float_greyscale_are_scaled(
    values: np.ndarray, mode: str, expected: list[int]
) -> None:
    image = Image.fromarray(values)
    assert image.mode == mode
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgb)[0, :, 0], expected)


# --- EXIF orientation ---


def exif_rotated(upright: Image.Image, orientation: int) -> bytes:
    """What a camera holding the picture that way stores: turned pixels plus the Orientation tag."""
    to_upright = TO_UPRIGHT[orientation]
    stored = upright.transpose(INVERSE.get(to_upright, to_upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", sorted(TO_UPRIGHT))
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = Image.new("RGB", (120, 80), BLUE)
    upright.paste(RED, (0, 0, 60, 40))  # red top-left quarter: every flip and rotation moves it
    array = decode(exif_rotated(upright, orientation), size=(80, 120))
    assert_colour(array[:30, :50], RED, 12)
    assert_colour(array[50:, :], BLUE, 12)
    assert_colour(array[:, 70:], BLUE, 12)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_exif_rotated_photo_is_classified_like_the_upright_one(
    orientation: int, imagenet_dir: Path, litert_imagenet: Backend
) -> None:
    upright = Image.open(imagenet_dir / "parrot.jpg")
    upright_data = encode(upright, "JPEG", quality=95)
    rotated_data = exif_rotated(upright, orientation)
    upright_array = decode(upright_data, litert_imagenet.input_size)
    rotated_array = decode(rotated_data, litert_imagenet.input_size)
    # Same picture up to JPEG re-encoding; without the EXIF step the arrays are far apart (checked below).
    assert np.abs(upright_array.astype(int) - rotated_array.astype(int)).mean() < 6
    sideways = np.asarray(Image.open(io.BytesIO(rotated_data)).convert("RGB").resize((224, 224)))
    assert np.abs(upright_array.astype(int) - sideways.astype(int)).mean() > 20

    probabilities = litert_imagenet.predict(np.stack([upright_array, rotated_array]))
    labels = [litert_imagenet.labels[i] for i in probabilities.argmax(axis=1)]
    assert labels == ["macaw", "macaw"]


# --- JPEG draft mode ---


def test_draft_decoding_gives_nearly_the_full_decode(imagenet_dir: Path) -> None:
    data = (imagenet_dir / "cat_720p.jpg").read_bytes()
    full = np.asarray(
        Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    )
    drafted = decode(data)
    assert np.abs(full.astype(int) - drafted.astype(int)).mean() < 3


def test_draft_decodes_a_large_jpeg_at_a_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    original_load = Image.Image.resize

    def spy(image: Image.Image, size: tuple[int, int], *args: object, **kwargs: object) -> Image.Image:
        seen.append(image.size)
        return original_load(image, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    decode(encode(red_left_blue_right(1920, 1080), "JPEG"))
    # libjpeg scaled by 1/4: still at least 224 on each side, and far fewer pixels than 1920 x 1080.
    assert seen == [(480, 270)]


# --- bad input ---


def truncated_png_header() -> bytes:
    return encode(Image.new("RGB", (64, 64), RED), "PNG")[:30]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"hello, this is not an image" * 4, "not_an_image"),
        (b"<html><body>404</body></html>", "not_an_image"),
        (encode(Image.new("RGB", (64, 64)), "TIFF"), "unsupported_type"),
        (encode(Image.new("RGB", (64, 64)), "PPM"), "unsupported_type"),
        (encode(Image.new("RGB", (32, 32)), "ICO"), "unsupported_type"),
        (truncated_png_header(), "corrupt_image"),
    ],
)
def test_bad_input_raises_image_error_with_its_code(data: bytes, code: str) -> None:
    with pytest.raises(ImageError) as raised:
        decode_image(data, SIZE)
    assert raised.value.code == code
    assert raised.value.detail
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_truncated_images_raise_truncated_image(fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise).convert("P") if fmt == "GIF" else Image.fromarray(noise), fmt)
    with pytest.raises(ImageError) as raised:
        decode_image(data[: len(data) // 2], SIZE)
    assert raised.value.code == "truncated_image"


def test_truncated_parrot_photo_raises_truncated_image(imagenet_dir: Path) -> None:
    data = (imagenet_dir / "parrot.jpg").read_bytes()
    with pytest.raises(ImageError) as raised:
        decode_image(data[: len(data) * 2 // 3], SIZE)
    assert raised.value.code == "truncated_image"


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header is rewritten to declare width x height (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


# Pillow itself warns from 89 M pixels and refuses from 179 M (DecompressionBombError); both end here.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(("width", "height"), [(8_000, 8_000), (10_000, 10_000), (60_000, 60_000)])
def test_images_declaring_too_many_pixels_are_refused_before_decoding(width: int, height: int) -> None:
    assert width * height > MAX_PIXELS
    with pytest.raises(ImageError) as raised:
        decode_image(png_declaring(width, height), SIZE)
    assert raised.value.code == "image_too_large"


def test_the_pixel_cap_can_be_lowered() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    decode_image(data, SIZE, max_pixels=10_000)
    with pytest.raises(ImageError) as raised:
        decode_image(data, SIZE, max_pixels=9_999)
    assert raised.value.code == "image_too_large"
