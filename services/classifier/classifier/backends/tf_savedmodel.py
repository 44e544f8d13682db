"""TensorFlow SavedModel backend (a TF Hub / Kaggle model directory, or any image classifier SavedModel).

Loaded with `tf.saved_model.load`, never `hub.KerasLayer` (which fails inside a Keras 3 `Sequential`).
The model is called through its `serving_default` signature when it has one, else through the root object's
`__call__` (TF Hub's Reusable SavedModel API). Either way it is wrapped in one `tf.function` whose input is
uint8 [None, H, W, 3]: the dynamic batch dimension means no retracing when the batch size changes, and the
uint8 -> float conversion runs inside the graph.

Input convention: a float input gets pixels scaled to [0, 1], TF Hub's convention for image models (the
MobileNetV2 classification model expects exactly that); a uint8 input gets the pixels as they are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from classifier.backends.common import ModelError, are_probabilities, check_batch, probe_batch, softmax
from classifier.labels import check_labels_fit, load_labels

log = logging.getLogger(__name__)

# When a signature has several outputs, the first of these names that it has is the class scores.
_OUTPUT_NAMES = ("probabilities", "logits", "predictions", "output_0", "default")

DEFAULT_INPUT_SIZE = (224, 224)
"""Used when the model's input signature leaves height and width open."""

# TF's thread pools can be sized only before its runtime starts, once per process.
_threads_lock = threading.Lock()


def configure_threads(intra_op: int, inter_op: int) -> tuple[int, int]:
    """Size TF's thread pools (0 = TF's default, one thread per core); returns the sizes in effect.

    Must run before TF's first op in this process. If the runtime has already started (a second backend
    in the same process, as in tests) the first sizes stay and a warning says so.
    """
    import tensorflow as tf

    with _threads_lock:
        threading_config = tf.config.threading
        wanted = (intra_op, inter_op)
        current = (
            threading_config.get_intra_op_parallelism_threads(),
            threading_config.get_inter_op_parallelism_threads(),
        )
        if current != wanted:
            try:
                threading_config.set_intra_op_parallelism_threads(intra_op)
                threading_config.set_inter_op_parallelism_threads(inter_op)
            except RuntimeError as exc:
                log.warning("TF threads stay at intra=%s inter=%s, not %s: %s", *current, wanted, exc)
        return (
            threading_config.get_intra_op_parallelism_threads(),
            threading_config.get_inter_op_parallelism_threads(),
        )


def _pick_output(outputs: Any) -> str:
    if not isinstance(outputs, dict) or not outputs:
        raise ModelError(f"the serving signature's outputs are not a dict of tensors: {outputs!r}")
    if len(outputs) == 1:
        return next(iter(outputs))
    for name in _OUTPUT_NAMES:
        if name in outputs:
            return name
    raise ModelError(f"cannot tell which output holds the class scores among {sorted(outputs)}")


def _image_spec(specs: list[Any], where: str) -> Any:
    import tensorflow as tf

    images = [s for s in specs if isinstance(s, tf.TensorSpec) and s.shape.rank == 4]
    if len(images) != 1 or len(specs) != 1:
        raise ModelError(f"{where} must take exactly one image tensor [N, H, W, 3], takes {specs!r}")
    return images[0]


def _resolve_model_function(model: Any) -> tuple[Callable[[Any], Any], Any, str]:
    """The model's function on a float/uint8 image batch, its input spec, and how it was found."""
    import tensorflow as tf

    signatures = getattr(model, "signatures", {})
    if "serving_default" in signatures:
        signature = signatures["serving_default"]
        args, kwargs = signature.structured_input_signature
        if args:
            raise ModelError(f"serving_default takes positional inputs {args!r}; expected one named input")
        spec = _image_spec(list(kwargs.values()), "serving_default")
        input_name = next(iter(kwargs))
        output_name = _pick_output(signature.structured_outputs)

        def call_signature(images: Any) -> Any:
            return signature(**{input_name: images})[output_name]

        return call_signature, spec, f"signature serving_default ({input_name} -> {output_name})"

    # Restored tf.functions list the input signatures they were traced (and saved) with.
    concrete = getattr(model.__call__, "concrete_functions", None) if callable(model) else None
    if not concrete:
        raise ModelError("the SavedModel has neither a serving_default signature nor a callable root object")
    specs = []
    for function in concrete:
        args, _kwargs = function.structured_input_signature
        tensors = [a for a in tf.nest.flatten(args) if isinstance(a, tf.TensorSpec)]
        if tensors:
            specs.append(_image_spec(tensors, "the root object's __call__"))
    if not specs:
        raise ModelError("cannot find the image input of the root object's __call__")

    def call_root(images: Any) -> Any:
        return model(images)

    return call_root, specs[0], "root __call__"


class TFSavedModelBackend:
    name = "tf"
    build_check: dict[str, object] | None = None

    def __init__(self, model_path: str, labels_path: str, *, threads: int, inter_op_threads: int) -> None:
        self._threads = configure_threads(threads, inter_op_threads)
        import tensorflow as tf

        path = Path(model_path)
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path} is not a SavedModel directory (no saved_model.pb)")
        try:
            # Kept as an attribute: the signature functions need the loaded object alive.
            self._model = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelError(f"cannot load the SavedModel at {path}: {exc}") from exc
        function, spec, self._entry = _resolve_model_function(self._model)

        height, width, channels = spec.shape[1:]
        if channels != 3:
            raise ModelError(f"the model's input {spec.shape} is not an RGB image batch [N, H, W, 3]")
        if height is None or width is None:
            # Some TF Hub models take any size; they are documented with the size they were trained at, for
            # ImageNet models almost always 224.
            log.warning("the model accepts any image size; feeding it %sx%s", *DEFAULT_INPUT_SIZE)
            height, width = DEFAULT_INPUT_SIZE
        self.input_size = (int(height), int(width))
        self._input_dtype = spec.dtype
        if spec.dtype == tf.uint8:

            def to_model_input(images: Any) -> Any:
                return images
        elif spec.dtype.is_floating:

            def to_model_input(images: Any) -> Any:
                return tf.cast(images, spec.dtype) / 255.0
        else:
            raise ModelError(f"unsupported input dtype {spec.dtype.name}: expected a float or uint8 image")

        @tf.function(input_signature=[tf.TensorSpec([None, *self.input_size, 3], tf.uint8)])
        def run(images: Any) -> Any:
            return tf.cast(function(to_model_input(images)), tf.float32)

        self._run = run
        self.model_path = str(path)

        # The first call builds and optimises the graph; doing it here is the warm-up, and its answer tells
        # whether the model ends in a softmax.
        probe = self._run(tf.constant(probe_batch(self.input_size))).numpy()
        if probe.ndim != 2:
            raise ModelError(f"the model answers shape {list(probe.shape)}; expected [N, classes]")
        self._outputs_probabilities = are_probabilities(probe)
        self.labels = load_labels(labels_path)
        check_labels_fit(self.labels, probe.shape[1], labels_path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input_size)
        outputs = self._run(batch).numpy()
        return outputs if self._outputs_probabilities else softmax(outputs)

    def info(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "build_check": self.build_check,
            "model_path": self.model_path,
            "entry": self._entry,
            "input_size": list(self.input_size),
            "input_dtype": self._input_dtype.name,
            "input_scaling": "pixels / 255 -> [0, 1]" if self._input_dtype.is_floating else "raw pixels",
            "outputs": "probabilities" if self._outputs_probabilities else "logits (softmax applied)",
            "num_classes": len(self.labels),
            "intra_op_threads": self._threads[0],
            "inter_op_threads": self._threads[1],
        }
