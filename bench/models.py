"""The benchmark's model: a stand-in for TF Hub's MobileNetV2 classifier, made and laid out by fetch_model.py.

There is no internet here, so the TF Hub model (google/imagenet/mobilenet_v2_100_224/classification) cannot be
downloaded. The stand-in has its exact architecture and compute: Keras' MobileNetV2 (alpha 1.0, 224x224, 1001
classes, no softmax), with seeded random weights, exported as a SavedModel with the TF Hub classification
interface (float32 [None, 224, 224, 3] in [0, 1] -> 1001 logits; a `__call__(inputs, training)` for
`hub.KerasLayer` and a `serving_default` signature). Timing does not depend on the weights' values; the
answers (labels) are meaningless, and every report says so.

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
DEFAULT_CACHE = REPO / "bench" / ".cache"
STANDIN = "standin:mobilenet_v2"
NUM_CLASSES = 1001
# Bump when the stand-in's recipe changes, so a stale cache is rebuilt rather than measured.
RECIPE = f"fetch_model.py --source {STANDIN} --tflite float32 (v1)"
MODEL_NOTE = (
    "Stand-in model: Keras MobileNetV2 1.0/224 with 1001 classes and seeded RANDOM weights, exported with "
    "the TF Hub classification interface (no internet here to fetch the TF Hub model). Same architecture and "
    "compute, so timings hold; its labels are meaningless."
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
        print(f"[bench] making {model_dir} with fetch_model.py ({STANDIN}, float32 .tflite)", flush=True)
    # The project's own tool, as the air-gapped image build runs it: the same stand-in, layout, conversion and
    # verification. A separate process: TensorFlow stays out of the benchmark's own process.
    subprocess.run(
        [
            sys.executable,
            str(FETCH_MODEL),
            "--source",
            STANDIN,
            "--labels",
            str(_labels_file(cache)),
            "--tflite",
            "float32",
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
        "quantized_fixture": str(FIXTURE_QUANT_TFLITE.resolve()) if FIXTURE_QUANT_TFLITE.is_file() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the benchmark's stand-in MobileNetV2 model dir.")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    print(ensure_model_dir(args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
