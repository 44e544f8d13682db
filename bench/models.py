"""The benchmark's model dir, made and laid out by fetch_model.py exactly as the image build does.

With the ImageNet fixtures (the lab's machines): the fixture's quantized MobileNetV2 rebuilt as a float32
SavedModel with its real weights (`--source dequantize:...`, the offline image's model), its float32 and
int8 .tflite conversions, and the uint8 fixture itself: every backend row measures a model that answers
real labels. Without them (a user's clone, no internet): `standin:mobilenet_v2`, Keras' MobileNetV2 1.0/224
with seeded random weights and the TF Hub interface, the same architecture and compute, meaningless
labels; the report says which.

    python3 -m bench.models [--cache bench/.cache]   build (or reuse) the model dir and print its path
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FETCH_MODEL = REPO / "services" / "classifier" / "fetch_model.py"
FIXTURES = REPO / ".." / "shared" / "fixtures" / "imagenet"
FIXTURE_LABELS = FIXTURES / "imagenet_labels.txt"
FIXTURE_QUANT_TFLITE = FIXTURES / "mobilenet_v2_1.0_224_quant.tflite"
CALIBRATION = REPO / "images"
DEFAULT_CACHE = REPO / "bench" / ".cache"
STANDIN = "standin:mobilenet_v2"
NUM_CLASSES = 1001
REAL_WEIGHTS = FIXTURE_QUANT_TFLITE.is_file()
if REAL_WEIGHTS:
    SOURCE = f"dequantize:{FIXTURE_QUANT_TFLITE.resolve()}"
    TFLITE = f"float32,int8,{FIXTURE_QUANT_TFLITE.resolve()}"
    MODEL_NOTE = (
        "Real ImageNet weights: the fixture's quantized MobileNetV2 1.0/224 rebuilt as a float32 SavedModel "
        "(fetch_model.py --source dequantize:, the offline image's model), its float32 and int8 .tflite "
        "conversions, and the uint8 fixture itself."
    )
else:
    SOURCE, TFLITE = STANDIN, "float32,int8"
    MODEL_NOTE = (
        "Stand-in model: Keras MobileNetV2 1.0/224 with 1001 classes and seeded RANDOM weights, exported "
        "with the TF Hub classification interface (no ImageNet fixtures and no internet here). Same "
        "architecture and compute, so timings hold; its labels are meaningless."
    )
# Bump the version when the recipe changes, so a stale cache is rebuilt rather than measured.
RECIPE = f"fetch_model.py --source {SOURCE} --tflite {TFLITE} --images {CALIBRATION} (v2)"
# The service is measured (gunicorn, direct and through nginx) with these backends.
SERVICE_BACKENDS = ("tf", "litert", "litert-int8")
# The bare rows: (label = CLASSIFIER_BACKEND name, title); each backend's file is BACKEND_KINDS' model_file.
BARE_ROWS = (
    ("tf", "TF SavedModel, float32"),
    ("litert", "LiteRT float32 (converted from it)"),
    ("litert-int8", "LiteRT int8 per-channel (quantized from it at build time)"),
    ("litert-uint8", "LiteRT uint8 per-tensor (the ImageNet fixture as given)"),
)


def _labels_file(cache: Path) -> Path:
    if FIXTURE_LABELS.is_file():
        return FIXTURE_LABELS
    # Without the fixtures (a user's clone), numbered labels do as well: the weights are random anyway.
    generated = cache / "labels-generated.txt"
    generated.write_text("".join(f"class_{i}\n" for i in range(NUM_CLASSES)), encoding="utf-8")
    return generated


def ensure_model_dir(cache: Path = DEFAULT_CACHE, log: bool = True) -> Path:
    """The model dir (saved_model/, model.tflite, labels.txt, manifest.json), built once and cached."""
    cache.mkdir(parents=True, exist_ok=True)
    model_dir = cache / "model"
    stamp = model_dir / "bench-recipe.txt"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == RECIPE:
        return model_dir
    if log:
        print(f"[bench] making {model_dir} with {RECIPE}", flush=True)
    # The project's own tool, as the image build runs it: the same model, layout, conversions and checks.
    # A separate process: TensorFlow stays out of the benchmark's own process.
    subprocess.run(
        [
            sys.executable,
            str(FETCH_MODEL),
            "--source",
            SOURCE,
            "--labels",
            str(_labels_file(cache)),
            "--tflite",
            TFLITE,
            "--images",
            str(CALIBRATION),
            "--out",
            str(model_dir),
        ],
        check=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=None if log else subprocess.DEVNULL,
    )
    stamp.write_text(RECIPE, encoding="utf-8")
    return model_dir


def model_summary(model_dir: Path) -> dict[str, object]:
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    return {
        "note": MODEL_NOTE,
        "recipe": RECIPE,
        "model_dir": str(model_dir),
        "fetch_model_manifest": manifest,
        "real_weights": REAL_WEIGHTS,
        "quantized_fixture": str(FIXTURE_QUANT_TFLITE.resolve()) if REAL_WEIGHTS else None,
    }


def bare_entries(model_dir: Path) -> list[tuple[str, str, Path, str]]:
    """(label, backend, model path, title) of each bare row whose file the model dir has."""
    sys.path.insert(0, str(REPO / "services" / "classifier"))
    from classifier.backends import BACKEND_KINDS

    rows = []
    for name, title in BARE_ROWS:
        path = model_dir / BACKEND_KINDS[name].model_file
        if path.exists():
            rows.append((name, name, path, title))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the benchmark's MobileNetV2 model dir.")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    print(ensure_model_dir(args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
