"""The photos the build reads: probe images (verification) and calibration inputs (int8 quantization)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ImagesError(ValueError):
    """A folder of images that cannot be used; the message is meant for the person running the build."""


def image_files(directory: Path) -> list[Path]:
    """The folder's image files (by suffix), sorted: the same order on every machine."""
    if not directory.is_dir():
        raise ImagesError(f"image folder {directory} does not exist")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def files_digest(paths: list[Path]) -> str:
    """sha256 over the sorted 'name sha256' lines: names the set an int8 model was calibrated on."""
    lines = [f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in sorted(paths)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def load_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB [H, W, 3] at `size` (height, width), resized whole (bilinear), as the service does."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def load_batch(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    return np.stack([load_rgb(p, size) for p in paths])


def synthetic_probes(size: tuple[int, int]) -> np.ndarray:
    """Fixed images (flat grey, a gradient, smooth seeded noise) for when no photos are given."""
    height, width = size
    grey = np.full((height, width, 3), 128, np.uint8)
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    gradient = np.broadcast_to(ramp[None, :, None], (height, width, 3)).astype(np.uint8)
    coarse = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    noise = np.kron(coarse, np.ones((height // 8 + 1, width // 8 + 1, 1), np.uint8))[:height, :width]
    return np.stack([grey, gradient, noise])


def calibration_images(
    paths: list[Path], size: tuple[int, int], count: int, seed: int = 0
) -> Iterator[np.ndarray]:
    """`count` uint8 images [H, W, 3] from the photos: each photo whole, then deterministic random crops
    (40-100 % of each side) and horizontal flips, cycling over the photos, so that a handful of photos gives
    the few hundred inputs a representative dataset needs, the same ones on every build."""
    from PIL import Image

    if not paths:
        raise ImagesError("no calibration images")
    rng = np.random.default_rng(seed)
    for index in range(count):
        path = paths[index % len(paths)]
        with Image.open(path) as opened:
            image = opened.convert("RGB")
            if index >= len(paths):
                width, height = image.size
                crop_w = int(width * rng.uniform(0.4, 1.0))
                crop_h = int(height * rng.uniform(0.4, 1.0))
                left = int(rng.integers(0, width - crop_w + 1))
                top = int(rng.integers(0, height - crop_h + 1))
                image = image.crop((left, top, left + crop_w, top + crop_h))
                if rng.random() < 0.5:
                    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            resized = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            yield np.asarray(resized, dtype=np.uint8)
