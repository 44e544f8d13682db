"""The benchmark's model: a stand-in for TF Hub's MobileNetV2 classifier, laid out by fetch_model.py.

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
SEED = 1234
NUM_CLASSES = 1001
INPUT_SIZE = 224
# Bump when the stand-in's recipe changes, so a stale cache is rebuilt rather than measured.
RECIPE = (
    f"tf_keras.applications.MobileNetV2(weights=None, classes={NUM_CLASSES}) seed={SEED} "
    "bn-calibrated hub-interface v2"
)
MODEL_NOTE = (
    "Stand-in model: Keras MobileNetV2 1.0/224 with 1001 classes and seeded RANDOM weights, exported with "
    "the TF Hub classification interface (no internet here to fetch the TF Hub model). Same architecture and "
    "compute, so timings hold; its labels are meaningless."
)


def export_standin_savedmodel(destination: Path, seed: int = SEED) -> Path:
    """Write the stand-in SavedModel (TF Hub classification interface) to `destination`."""
    import numpy as np
    import tensorflow as tf

    # tf_keras (Keras 2, what TF Hub's models and hub.KerasLayer are built on), not tf.keras (Keras 3): the
    # TFLite converter leaves a Keras 3 model's variables unfrozen (VAR_HANDLE ops, a 193 KB model that
    # answers NaN), where the Keras 2 model converts to the expected 14 MB float32 flatbuffer.
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    keras_model = tf_keras.applications.MobileNetV2(
        input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
        weights=None,
        classes=NUM_CLASSES,
        classifier_activation=None,
    )
    # Fresh batch-norm statistics (mean 0, variance 1) shrink activations layer after layer, down to logits of
    # 1e-12 and possibly denormal floats, which CPUs compute far more slowly than trained weights' values.
    # One training-mode pass with momentum 0 sets every layer's statistics from real activations, so values
    # stay in a trained model's range (logits of order 1).
    for layer in keras_model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum = 0.0
    calibration = np.random.default_rng(seed).random((16, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)
    keras_model(calibration * 2.0 - 1.0, training=True)

    class HubClassifier(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.keras_model = keras_model

        # TF Hub image models take [0, 1]; Keras' MobileNetV2 wants [-1, 1] (what its preprocess_input does).
        @tf.function
        def __call__(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
            return self.keras_model(inputs * 2.0 - 1.0, training=training)

    module = HubClassifier()
    spec = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="inputs")
    # Traced before saving: the restored __call__ (what hub.KerasLayer calls) exists only for traced inputs.
    module.__call__.get_concrete_function(spec, training=False)

    @tf.function(input_signature=[spec])
    def serving(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": module(inputs, training=False)}

    tf.saved_model.save(module, str(destination), signatures={"serving_default": serving})
    return destination


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
    export = cache / "standin-savedmodel"
    if (
        not (export / "saved_model.pb").is_file()
        or not (cache / "standin-recipe.txt").is_file()
        or ((cache / "standin-recipe.txt").read_text(encoding="utf-8") != RECIPE)
    ):
        if log:
            print(f"[bench] exporting the stand-in SavedModel to {export}", flush=True)
        # A separate process: TensorFlow's thread pools and memory stay out of the benchmark's own process.
        subprocess.run(
            [sys.executable, "-m", "bench.models", "--export-only", str(export)],
            check=True,
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        (cache / "standin-recipe.txt").write_text(RECIPE, encoding="utf-8")
    if log:
        print(f"[bench] laying out {model_dir} with fetch_model.py (float32 .tflite conversion)", flush=True)
    # The project's own tool, as the image build runs it: same layout, same conversion, same verification.
    subprocess.run(
        [
            sys.executable,
            str(FETCH_MODEL),
            "--source",
            str(export),
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
    parser.add_argument("--export-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export_only:
        export_standin_savedmodel(args.export_only)
        return 0
    print(ensure_model_dir(args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
