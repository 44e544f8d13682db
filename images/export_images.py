"""Export the lab's test photos from scikit-image's bundled data, and write PROVENANCE.md beside them.

Every source photo is public domain or CC0 according to its scikit-image docstring (quoted into
PROVENANCE.md, so the license travels with the files). The outputs are committed; rerun this script only
to change the set: `python3 images/export_images.py` (needs scikit-image and Pillow).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage
from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Export:
    source: str  # name of the skimage.data function
    width: int
    height: int
    fmt: str  # Pillow format name
    purpose: str

    @property
    def filename(self) -> str:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[self.fmt]
        return f"{self.source}_{self.width}x{self.height}.{ext}"


EXPORTS: tuple[Export, ...] = (
    Export("chelsea", 640, 480, "JPEG", "the benchmarks' 640x480 JPEG (a tabby cat, an ImageNet class)"),
    Export("rocket", 1920, 1080, "JPEG", "the benchmarks' 1080p JPEG (decode cost of a large upload)"),
    Export("coffee", 640, 480, "JPEG", "a second 640x480 JPEG (espresso cup)"),
    Export("rocket", 1280, 720, "JPEG", "a 720p JPEG between the two benchmark sizes"),
    Export("chelsea", 224, 224, "JPEG", "already at the model's input size: the cheapest possible decode"),
    Export("astronaut", 512, 512, "PNG", "a lossless PNG (the source's native size)"),
    Export("coffee", 600, 400, "WEBP", "a WebP (the source's native size)"),
)

JPEG_QUALITY = 90
WEBP_QUALITY = 85

# The license sentence of each source, checked against its docstring at export time so a changed
# upstream license stops the script instead of silently shipping a mislabelled file.
LICENSES: dict[str, tuple[str, str]] = {
    "chelsea": ("CC0 1.0 (photographer Stefan van der Walt)", "CC0 by the photographer"),
    "coffee": ("CC0 1.0 (photographer Rachel Michetti, Pikolo Espresso Bar)", "CC0 by the photographer"),
    "rocket": (
        "Public domain (SpaceX, flickr.com/photos/spacexphotos/16511594820)",
        "released in the public domain",
    ),
    "astronaut": ("Public domain (NASA Great Images, flic.kr/p/r9qvLn)", "released into the public domain"),
}


def center_crop_resize(rgb: np.ndarray, width: int, height: int) -> Image.Image:
    """Crop the largest centred box with the target aspect ratio, then resize with Lanczos."""
    img = Image.fromarray(rgb).convert("RGB")
    src_w, src_h = img.size
    target = width / height
    if src_w / src_h > target:
        crop_w, crop_h = round(src_h * target), src_h
    else:
        crop_w, crop_h = src_w, round(src_w / target)
    left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
    img = img.crop((left, top, left + crop_w, top + crop_h))
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.LANCZOS)
    return img


def save(img: Image.Image, path: Path, fmt: str) -> None:
    if fmt == "JPEG":
        # No EXIF, no ICC profile: plain baseline sRGB JPEG like a phone upload minus metadata.
        img.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif fmt == "PNG":
        img.save(path, "PNG", optimize=True)
    elif fmt == "WEBP":
        img.save(path, "WEBP", quality=WEBP_QUALITY, method=6)
    else:
        raise ValueError(f"unsupported format {fmt}")


def docstring_summary(source: str) -> str:
    doc = inspect.getdoc(getattr(data, source)) or ""
    return doc.splitlines()[0].strip() if doc else source


def check_license(source: str) -> None:
    doc = " ".join((inspect.getdoc(getattr(data, source)) or "").split())
    needle = LICENSES[source][1]
    if needle not in doc:
        raise SystemExit(f"skimage.data.{source}: license text {needle!r} not in its docstring; check it")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(rows: list[tuple[Export, Path, tuple[int, ...]]]) -> str:
    lines = [
        "# Test photos: provenance and licenses",
        "",
        "Made by `python3 images/export_images.py` from the photos bundled with scikit-image "
        f"{skimage.__version__} (`skimage.data`, no download). Each is a centred crop to the target aspect "
        "ratio, resized with Lanczos (upscaled where the source is smaller: sizes are for decode and upload "
        f"cost, not for detail), saved without metadata: JPEG quality {JPEG_QUALITY} (optimized, baseline), "
        f"PNG optimized, WebP quality {WEBP_QUALITY}.",
        "",
        "The licenses are quoted from each function's docstring in scikit-image, which the script checks "
        "before exporting. The nginx service serves this folder at `/images/`; Locust uploads these files "
        "and sends their URLs.",
        "",
        "| file | source | license | size | bytes | purpose | sha256 (first 16) |",
        "|---|---|---|---|---|---|---|",
    ]
    for exp, path, src_shape in rows:
        summary = docstring_summary(exp.source).rstrip(".")
        src = f"`skimage.data.{exp.source}()` ({summary}; {src_shape[1]}x{src_shape[0]})"
        lines.append(
            f"| {path.name} | {src} | {LICENSES[exp.source][0]} | {exp.width}x{exp.height} {exp.fmt} "
            f"| {path.stat().st_size} | {exp.purpose} | {sha256(path)[:16]} |"
        )
    lines += [
        "",
        "Benchmarks use `chelsea_640x480.jpg` (the 640x480 JPEG) and `rocket_1920x1080.jpg` (1080p JPEG).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for exp in EXPORTS:
        check_license(exp.source)
        rgb = getattr(data, exp.source)()
        path = out / exp.filename
        save(center_crop_resize(rgb, exp.width, exp.height), path, exp.fmt)
        rows.append((exp, path, rgb.shape))
        print(f"{path.name}: {path.stat().st_size} bytes")
    (out / "PROVENANCE.md").write_text(provenance(rows))
    total = sum(p.stat().st_size for _, p, _ in rows)
    print(f"total: {total} bytes in {len(rows)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
