"""Fetch the classifier's model at image build time (never at container start) and lay it out for the service.

    python fetch_model.py --source SOURCE --labels LABELS [--tflite none|LIST] [--images DIR] [--no-verify]
        --out DIR

SOURCE is one of:
- an http(s) URL of a TF Hub / Kaggle model (https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/
  classification/5, https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-classification/2)
  or of a SavedModel .tar.gz: downloaded with `tensorflow_hub.resolve` into a temporary cache;
- a Kaggle model handle (google/mobilenet-v2/tensorFlow2/100-224-classification[/2]), the same as its URL;
- an http(s) URL of a .tflite file: downloaded as is;
- a local path: a SavedModel directory or a .tflite file;
- `dequantize:PATH` or `dequantize:URL` of a quantized .tflite (the MobileNet op set, uint8 or int8,
  per-tensor or per-channel): rebuilt as a float32 SavedModel with its real weights and the TF Hub
  classification interface (modelbuild/dequantize.py), checked op by op against the interpreter and on
  top-1; what the air-gapped build serves with the TF backend;
- `standin:mobilenet_v2`: MobileNetV2 1.00 224 built here with seeded random weights and the TF Hub
  classification model's interface (float32 [N, 224, 224, 3] in [0, 1] -> 1001 logits). Same architecture and
  compute, meaningless predictions: only for the benchmark on a clone without the ImageNet fixtures.
LABELS is an http(s) URL or a local path of a label file, one label per line (index 0 = "background" for
the TF Hub ImageNet models), e.g. https://storage.googleapis.com/download.tensorflow.org/data/ImageNetLabels.txt.
--tflite (with a SavedModel source) is `none` or a comma-separated list of `float32` (converted),
`int8` (full-integer post-training quantization calibrated on --images, modelbuild/quantize.py) and paths
of .tflite files to serve beside it; each lands as TFLITE_FILES names it, by number format.
--images is a folder of photos: the probe images of the checks and int8's calibration set.

Output in --out: saved_model/ (when the source is a SavedModel), model.tflite / model-int8.tflite /
model-uint8.tflite, labels.txt, and manifest.json (sources, sizes, sha256s, what was made, the dequantize
and int8 checks, the verification). Verification (on by default when the `classifier` package sits next to
this file, as in the service's folder) loads every model made with the service's own backends, checks the
label count, and checks that a converted .tflite answers like its SavedModel; the dequantize and int8
checks run everywhere, in the image build too. Exits 1 with a message on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DOWNLOAD_TIMEOUT_S = 120
KAGGLE_MODELS_URL = "https://www.kaggle.com/models/"
# owner/model/framework/variation[/version], e.g. google/mobilenet-v2/tensorFlow2/100-224-classification/2
KAGGLE_HANDLE = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+/[\w.-]+(/\d+)?$")
# A float32 conversion must answer like its SavedModel: this bound is on probabilities, far above float32
# rounding (1e-6) and far below any real mismatch (wrong input scaling moves them by 1e-2 and more).
MAX_CONVERSION_DIFF = 1e-3
STANDIN = "standin:mobilenet_v2"
DEQUANTIZE = "dequantize:"
# The repository's photos, when this script sits in its clone (services/classifier/): the default probes.
REPO_IMAGES = Path(__file__).resolve().parent.parent.parent / "images"


class FetchError(Exception):
    """A failure with a message meant for the person running the build."""


def say(message: str) -> None:
    print(f"[fetch_model] {message}", flush=True)


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_tree(directory: Path) -> dict[str, Any]:
    """Size and a sha256 of a directory: the hash of its sorted 'relative/path sha256' lines."""
    lines, total = [], 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        lines.append(f"{path.relative_to(directory).as_posix()} {sha256_file(path)}\n")
        total += path.stat().st_size
    return {
        "sha256": hashlib.sha256("".join(lines).encode()).hexdigest(),
        "bytes": total,
        "files": len(lines),
    }


def describe_file(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def download(url: str, destination: Path) -> Path:
    say(f"downloading {url}")
    started = time.monotonic()
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            destination.open("wb") as out,
        ):
            shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, ValueError) as exc:
        raise FetchError(f"cannot download {url}: {exc}") from exc
    say(f"  {destination.stat().st_size:,} bytes in {time.monotonic() - started:.1f} s")
    return destination


def resolve_hub_model(handle: str, cache_dir: Path) -> Path:
    """Download a TF Hub / Kaggle model (or a SavedModel .tar.gz URL) into cache_dir; its local directory."""
    os.environ["TFHUB_CACHE_DIR"] = str(cache_dir)
    try:
        import tensorflow_hub as hub
    except ImportError as exc:
        raise FetchError(f"downloading {handle} needs tensorflow-hub (and tf-keras): {exc}") from exc
    say(f"resolving {handle} with tensorflow_hub (cache {cache_dir})")
    started = time.monotonic()
    try:
        path = Path(hub.resolve(handle))
    except Exception as exc:  # tensorflow_hub raises plain Exception/OSError/ValueError subclasses
        raise FetchError(f"cannot download the model {handle}: {exc}") from exc
    say(f"  resolved to {path} in {time.monotonic() - started:.1f} s")
    return path


def make_standin(destination: Path, seed: int = 1234) -> Path:
    """MobileNetV2 with seeded random weights behind the TF Hub classification model's interface.

    Built with tf_keras (Keras 2, what TF Hub's models and hub.KerasLayer use): the TFLite converter leaves a
    Keras 3 model's variables unfrozen (a 193 KB model that answers NaN), where Keras 2 converts to the
    expected 14 MB float32 flatbuffer.
    """
    import numpy as np
    import tensorflow as tf
    import tf_keras

    say(f"building {STANDIN}: MobileNetV2 1.00 224, random weights (seed {seed}), TF Hub interface")
    tf_keras.utils.set_random_seed(seed)
    net = tf_keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), weights=None, classes=1001, classifier_activation=None
    )
    # Fresh batch-norm statistics shrink activations layer after layer, down to denormal floats that CPUs
    # compute far more slowly than a trained model's values: one training-mode pass with momentum 0 sets
    # every layer's statistics from real activations, so timings match the trained model's.
    for layer in net.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum = 0.0
    calibration = np.random.default_rng(seed).random((16, 224, 224, 3), dtype=np.float32)
    net(calibration * 2.0 - 1.0, training=True)

    class HubInterface(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        @tf.function
        def __call__(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
            # TF Hub image models take [0, 1]; Keras' MobileNetV2 wants [-1, 1].
            return self.net(inputs * 2.0 - 1.0, training=training)

    module = HubInterface()
    spec = tf.TensorSpec([None, 224, 224, 3], tf.float32, name="inputs")
    # Traced before saving: the restored __call__ (what hub.KerasLayer calls) exists only for traced inputs.
    module.__call__.get_concrete_function(spec, training=False)
    serving = tf.function(lambda inputs: {"logits": module(inputs, training=False)}, input_signature=[spec])
    tf.saved_model.save(module, str(destination), signatures={"serving_default": serving})
    return destination


def locate_source(source: str, workdir: Path) -> tuple[str, Path]:
    """('savedmodel' | 'tflite', local path) for --source, downloading it first when it is remote."""
    if source == STANDIN:
        return "savedmodel", make_standin(workdir / "standin")
    if is_url(source):
        if urllib.parse.urlparse(source).path.endswith(".tflite"):
            return "tflite", download(source, workdir / "downloaded.tflite")
        return "savedmodel", resolve_hub_model(source, workdir / "tfhub-cache")
    path = Path(source)
    if path.is_file():
        if path.suffix != ".tflite":
            raise FetchError(f"{path} is a file but not a .tflite model (a SavedModel is a directory)")
        return "tflite", path
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise FetchError(f"{path} is a directory without saved_model.pb: not a SavedModel")
        return "savedmodel", path
    if KAGGLE_HANDLE.match(source) and not source.startswith("."):
        url = KAGGLE_MODELS_URL + source
        say(f"{source} is no local path: taken as the Kaggle model {url}")
        return "savedmodel", resolve_hub_model(url, workdir / "tfhub-cache")
    raise FetchError(f"model source {source!r} is neither a URL, a Kaggle model handle, nor an existing path")


def fetch_labels(source: str, destination: Path, workdir: Path) -> int:
    if is_url(source):
        fetched = download(source, workdir / "labels.download")
    else:
        fetched = Path(source)
        if not fetched.is_file():
            raise FetchError(f"labels file {fetched} does not exist")
    try:
        text = fetched.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FetchError(f"cannot read labels from {source}: {exc}") from exc
    labels = text.rstrip().splitlines()
    if not labels:
        raise FetchError(f"labels from {source} are empty")
    destination.write_text("\n".join(label.strip() for label in labels) + "\n", encoding="utf-8")
    say(f"labels: {len(labels)} from {source}")
    return len(labels)


def convert_to_tflite(saved_model_dir: Path, destination: Path) -> Path:
    """float32 .tflite from a SavedModel, as it is (no quantization, no optimisation flags).

    The converter keeps the SavedModel's dynamic batch dimension in the input's shape_signature, with a
    default shape of 1; the LiteRT backend runs one image per invoke anyway.
    """
    import tensorflow as tf

    say(f"converting {saved_model_dir} to a float32 .tflite")
    started = time.monotonic()
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        raise FetchError(f"cannot convert {saved_model_dir} to .tflite: {exc}") from exc
    destination.write_bytes(flatbuffer)
    say(f"  {len(flatbuffer):,} bytes in {time.monotonic() - started:.1f} s")
    return destination


def verify(out: Path, made: dict[str, Path], *, converted: bool) -> dict[str, Any]:
    """Load each model made with the service's backends; compare a converted .tflite with its SavedModel."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from classifier.backends import load_backend
        from classifier.backends.common import probe_batch
    except ImportError as exc:
        say(f"WARNING: not verified: the classifier package is not next to this script ({exc})")
        return {"verified": False, "reason": f"classifier package not importable: {exc}"}

    labels = str(out / "labels.txt")
    result: dict[str, Any] = {"verified": True}
    answers = {}
    kinds = {"saved_model": "tf", "float32": "litert", "uint8": "litert", "int8": "litert"}
    for key, kind in kinds.items():
        if key not in made:
            continue
        name = made[key].name
        say(f"verifying {name} with the {kind} backend")
        try:
            backend = load_backend(kind, str(made[key]), labels, threads=0, inter_op_threads=0)
        except Exception as exc:  # ModelError, LabelsError, or the runtime's own errors
            raise FetchError(f"{name} does not load in the service's {kind} backend: {exc}") from exc
        info = backend.info()
        images = probe_batch(backend.input_size)
        answers[key] = backend.predict(images)
        keys = ("input_size", "input_dtype", "input_scaling", "outputs", "num_classes")
        result[name] = {k: info[k] for k in keys}
        say(f"  ok: {json.dumps(result[name])}")
    if converted and "saved_model" in answers and "float32" in answers:
        diff = float(abs(answers["saved_model"] - answers["float32"]).max())
        result["max_probability_diff_tflite_vs_saved_model"] = diff
        say(f"  converted .tflite vs SavedModel: max probability difference {diff:.2e}")
        if not diff <= MAX_CONVERSION_DIFF:  # also catches NaN, which compares false with everything
            raise FetchError(
                f"the converted .tflite disagrees with the SavedModel by {diff:.3g} (> {MAX_CONVERSION_DIFF})"
            )
    return result


# Where each .tflite lands in the model directory, by its number format; the service's BACKEND_KINDS
# serve them as litert, litert-uint8 and litert-int8 (a test in test_backends_fetch_model.py keeps both
# in step).
TFLITE_FILES = {"float32": "model.tflite", "uint8": "model-uint8.tflite", "int8": "model-int8.tflite"}
MADE_TFLITES = ("float32", "int8")  # what --tflite can make from a SavedModel; a path copies a given file


def parse_tflite(value: str) -> list[str]:
    """--tflite: `none`, or a comma-separated list of float32, int8 and .tflite file paths."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if items == ["none"]:
        return []
    for item in items:
        if item not in MADE_TFLITES and not (item.endswith(".tflite") and Path(item).is_file()):
            raise FetchError(
                f"--tflite {item}: neither none, {', '.join(MADE_TFLITES)}, nor an existing .tflite file"
            )
    if not items:
        raise FetchError("--tflite is empty: give none, float32, int8 or .tflite paths")
    return items


def tflite_format(path: Path) -> str:
    """A given .tflite's number format, named by its input tensor's type (float32, uint8 or int8)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        dtype = Interpreter(model_path=str(path)).get_input_details()[0]["dtype"]
    except (ValueError, RuntimeError, IndexError) as exc:
        raise FetchError(f"{path} does not load as a .tflite: {exc}") from exc
    name = getattr(dtype, "__name__", str(dtype))
    if name not in TFLITE_FILES:
        raise FetchError(f"{path}: input type {name} is none of {', '.join(TFLITE_FILES)}")
    return name


def probe_photos(images: str | None) -> list[Path]:
    """The photos the build checks models on (and calibrates int8 with); none when no folder is given."""
    from modelbuild.images import ImagesError, image_files

    if not images:
        return []
    if not Path(images).is_dir():
        say(f"no probe photos: {images} does not exist (int8 needs it; the other checks use fixed images)")
        return []
    try:
        photos = image_files(Path(images))
    except ImagesError as exc:
        raise FetchError(str(exc)) from exc
    say(f"probe photos: {len(photos)} in {images}")
    return photos


def dequantize_source(spec: str, workdir: Path, photos: list[Path]) -> tuple[Path, dict[str, Any]]:
    """`dequantize:PATH|URL`: the .tflite rebuilt as a float32 SavedModel, checked against the interpreter."""
    from modelbuild.dequantize import UnsupportedModel, dequantize

    where = spec.removeprefix(DEQUANTIZE)
    tflite = download(where, workdir / "source.tflite") if is_url(where) else Path(where)
    if not tflite.is_file() or tflite.suffix != ".tflite":
        raise FetchError(f"{spec}: {tflite} is not a .tflite file")
    say(f"rebuilding {tflite} as a float32 SavedModel (its quantized weights, dequantized)")
    try:
        conversion = dequantize(tflite, workdir / "dequantized", photos)
    except UnsupportedModel as exc:
        raise FetchError(f"cannot dequantize {tflite}: {exc}") from exc
    record = {"source": describe_file(tflite), **conversion.record()}
    checked, answers = conversion.op_check, conversion.answers
    say(
        f"  {conversion.parameters:,} parameters in {conversion.seconds:.1f} s; per-op check: max "
        f"{checked['max_steps']} quantization steps over {checked['ops']} ops x {checked['probes']} probes; "
        f"top-1 equal on {answers['top1_agree']}/{answers['images']} {answers['on']}, "
        f"max |dp| {answers['max_abs_diff']}"
    )
    if not conversion.passed:
        raise FetchError(f"the rebuilt SavedModel does not answer like {tflite}: {json.dumps(record)}")
    return workdir / "dequantized", record


def make_int8(saved_model: Path, destination: Path, photos: list[Path]) -> dict[str, Any]:
    """int8 post-training quantization of the SavedModel, then the agreement check against it."""
    from modelbuild.images import ImagesError
    from modelbuild.quantize import agreement, quantize_int8, weight_quantization

    say(f"quantizing {saved_model} to full-integer int8, calibrated on {len(photos)} photos")
    try:
        record = quantize_int8(saved_model, destination, photos)
        record["quantization"] = weight_quantization(destination)
        record["agreement"] = agreement(destination, saved_model, photos)
    except ImagesError as exc:
        raise FetchError(str(exc)) from exc
    check = record["agreement"]
    say(
        f"  {destination.stat().st_size:,} bytes in {record['seconds']} s; vs float: top-1 equal on "
        f"{check['top1_agree']}/{check['photos']} photos, mean |dp| (top 5) {check['mean_abs_diff_top5']}"
    )
    if not check["passed"]:
        raise FetchError(
            f"the int8 model disagrees with its float model beyond {check['threshold']}: {check}"
        )
    return record


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": args.source,
        "labels_source": args.labels,
        "tflite": args.tflite,
        "files": {},
        "made": [],
    }
    made: dict[str, Path] = {}
    wanted = parse_tflite(args.tflite)
    photos = probe_photos(args.images)
    if "int8" in wanted and not photos:  # before any download or conversion
        from modelbuild.quantize import NO_CALIBRATION

        raise FetchError(f"{NO_CALIBRATION}: {args.images or 'no --images folder given'}")
    with tempfile.TemporaryDirectory(prefix="fetch_model-") as tmp:
        workdir = Path(tmp)
        if args.source.startswith(DEQUANTIZE):
            kind, (local, manifest["dequantized"]) = (
                "savedmodel",
                dequantize_source(args.source, workdir, photos),
            )
            made_how = f"rebuilt from {args.source}"
        else:
            kind, local = locate_source(args.source, workdir)
            made_how = "copied from the source"
        manifest["source_kind"] = kind
        num_labels = fetch_labels(args.labels, out / "labels.txt", workdir)
        manifest["files"]["labels.txt"] = {**describe_file(out / "labels.txt"), "labels": num_labels}
        for stale in TFLITE_FILES.values():  # from an earlier run: would not match this model
            (out / stale).unlink(missing_ok=True)

        if kind == "savedmodel":
            saved_model = out / "saved_model"
            if saved_model.exists():
                shutil.rmtree(saved_model)
            say(f"copying the SavedModel {local} to {saved_model}")
            shutil.copytree(local, saved_model)
            manifest["files"]["saved_model"] = describe_tree(saved_model)
            manifest["made"].append(f"saved_model/ ({made_how})")
            made["saved_model"] = saved_model
            for item in wanted:
                if item == "float32":
                    path = convert_to_tflite(saved_model, out / TFLITE_FILES["float32"])
                    manifest["made"].append(f"{path.name} (float32, converted from the SavedModel)")
                    made["float32"] = path
                elif item == "int8":
                    path = out / TFLITE_FILES["int8"]
                    manifest["int8"] = make_int8(saved_model, path, photos)
                    manifest["made"].append(f"{path.name} (int8 per-channel, quantized from the SavedModel)")
                    made["int8"] = path
                else:
                    given = Path(item)
                    number_format = tflite_format(given)
                    if number_format in made:
                        raise FetchError(f"--tflite names two {number_format} models ({item} and another)")
                    path = out / TFLITE_FILES[number_format]
                    shutil.copyfile(given, path)
                    manifest["made"].append(f"{path.name} ({number_format}, copied from {item})")
                    manifest["files"][f"{path.name}_source"] = describe_file(given)
                    made[number_format] = path
        else:
            if wanted:
                say(f"--tflite {args.tflite} ignored: the source is already a .tflite, copied as it is")
            path = out / TFLITE_FILES["float32"]
            shutil.copyfile(local, path)
            manifest["made"].append(f"{path.name} (copied from the source)")
            made["float32"] = path
        for number_format in TFLITE_FILES:
            if number_format in made:
                manifest["files"][made[number_format].name] = describe_file(made[number_format])

        if args.verify:
            manifest["verification"] = verify(out, made, converted="float32" in wanted)
        else:
            manifest["verification"] = {"verified": False, "reason": "--no-verify"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {out / 'manifest.json'}: {', '.join(manifest['made'])}")
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        required=True,
        help=f"TF Hub / Kaggle URL or handle, .tflite URL, a local path, {DEQUANTIZE}PATH|URL of a quantized "
        f".tflite to rebuild as a float SavedModel, or {STANDIN}",
    )
    parser.add_argument(
        "--labels", required=True, help="labels file: https URL or local path, one label per line"
    )
    parser.add_argument(
        "--tflite",
        default="none",
        help="with a SavedModel source: none, or a comma-separated list of float32 (convert it to "
        "model.tflite), int8 (quantize it to model-int8.tflite, calibrated on --images) and paths of .tflite "
        "files to serve beside it (model-<its input type>.tflite) (default: none)",
    )
    parser.add_argument(
        "--images",
        default=str(REPO_IMAGES) if REPO_IMAGES.is_dir() else None,
        help="folder of photos: the probe images of the checks and int8's calibration set "
        "(default: the repository's images/ when this script sits in it)",
    )
    parser.add_argument("--out", required=True, help="output directory, e.g. /opt/model")
    parser.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip loading the results with the backends"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.source.strip() or not args.labels.strip():
        print("error: --source and --labels must not be empty", file=sys.stderr)
        return 1
    try:
        run(args)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
