"""A quantized image-classifier .tflite rebuilt as a float32 SavedModel with plain TensorFlow ops.

A quantized .tflite holds every weight of its float model up to the quantization step:
real = scale * (q - zero_point), per tensor or per output channel (the tensor's `quantized_dimension`), and
int32 biases whose scale is input scale x weight scale. Rebuilding the graph op by op with those weights
gives a float model with the quantized model's real ImageNet weights, served by the TF backend.

The graph is read from the flatbuffer (LiteRT's schema module), not from the interpreter's op details: with
the XNNPACK delegate those hide the ops' options. Layout facts the rebuild depends on:
- CONV_2D weights are OHWI; TensorFlow wants HWIO.
- DEPTHWISE_CONV_2D weights are [1, kh, kw, C * M]; TensorFlow wants [kh, kw, C, M].
- per-channel axes differ: 0 for conv weights, 3 for depthwise weights (read from each tensor).
- the classifier's final SOFTMAX may be followed by a QUANTIZE (or DEQUANTIZE): the logits are the softmax's
  input, whatever follows it.
- quantized activations saturate at their type's range (one MobileNetV2 layer does in the uint8 fixture);
  the float model does not clamp, so the per-op check compares the float output clipped to that range.

Interface (TF Hub's image classification models): float32 [N, H, W, 3] in [0, 1] -> logits, dynamic N,
through a `serving_default` signature (`inputs` -> `logits`) and the root object's `__call__`. The [0, 1]
input is mapped onto the .tflite input's real range, [scale * (qmin - zp), scale * (qmax - zp)], which is how
the LiteRT backend feeds the quantized model pixels (see classifier/backends/litert.py).

Only the op set of the MobileNet family is supported; any other op, fused activation, weight type or
layout is refused with an `UnsupportedModel` naming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "AVERAGE_POOL_2D",
    "MEAN",
    "RESHAPE",
    "SOFTMAX",
    "QUANTIZE",
    "DEQUANTIZE",
)
# Ops that only change the number format: identities in float.
_FORMAT_OPS = ("QUANTIZE", "DEQUANTIZE")
# One quantization step of the op's output, plus float32 rounding: the bound of the per-op check.
STEP_TOLERANCE = 1.0
FLOAT_ATOL = 1e-5


class UnsupportedModel(ValueError):
    """The .tflite has an op, option, type or layout the rebuild does not support (named in the message)."""


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # older LiteRT wheels: TensorFlow ships the same generated module
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _enum_names(enum: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    axis: int
    constant: np.ndarray | None  # dequantized float32 (or int32 for shapes/axes) when the tensor has data

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale.size > 0 and self.dtype != np.float32

    def real_range(self) -> tuple[float, float]:
        """The real values the quantized type can represent (per-tensor quantization)."""
        limits = np.iinfo(self.dtype)
        assert self.scale is not None and self.zero_point is not None
        scale, zero = float(self.scale[0]), float(self.zero_point[0])
        return scale * (limits.min - zero), scale * (limits.max - zero)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return raw.astype(np.float32) if raw.dtype.kind == "f" else raw
        assert self.scale is not None and self.zero_point is not None
        shape = [1] * raw.ndim
        if self.scale.size > 1:
            shape[self.axis] = -1
        scale = self.scale.astype(np.float64).reshape(shape)
        zero = self.zero_point.astype(np.float64).reshape(shape)
        return (scale * (raw.astype(np.float64) - zero)).astype(np.float32)


@dataclass
class Op:
    name: str
    inputs: list[int]
    output: int
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: dict[int, Tensor]
    ops: list[Op]
    input: int
    output: int
    logits: int  # the tensor the SavedModel answers: the final softmax's input, else the output
    op_counts: dict[str, int]


_TENSOR_TYPES = {
    "FLOAT32": np.float32,
    "INT32": np.int32,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "INT64": np.int64,
}


def read_graph(flatbuffer: bytes) -> Graph:
    """Parse the .tflite into tensors (weights dequantized) and ops; refuse anything unsupported."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    if len(model.subgraphs) != 1:
        raise UnsupportedModel(f"{len(model.subgraphs)} subgraphs: only single-subgraph models are supported")
    graph = model.subgraphs[0]
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    activations = _enum_names(schema.ActivationFunctionType)
    paddings = _enum_names(schema.Padding)

    tensors: dict[int, Tensor] = {}
    for index, t in enumerate(graph.tensors):
        type_name = type_names.get(t.type, str(t.type))
        if type_name not in _TENSOR_TYPES:
            raise UnsupportedModel(f"tensor {t.name!r}: type {type_name} is not supported")
        if t.sparsity is not None:
            raise UnsupportedModel(f"tensor {t.name!r}: sparse tensors are not supported")
        dtype = np.dtype(_TENSOR_TYPES[type_name])
        quant = t.quantization
        scale = zero = None
        axis = 0
        if quant is not None and quant.scale is not None and len(quant.scale) > 0:
            if quant.details is not None:
                raise UnsupportedModel(f"tensor {t.name!r}: custom quantization details are not supported")
            scale = np.asarray(quant.scale, np.float64)
            zero = np.asarray(quant.zeroPoint if quant.zeroPoint is not None else [0] * scale.size, np.int64)
            axis = int(quant.quantizedDimension)
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        tensor = Tensor(
            index,
            t.name.decode() if isinstance(t.name, bytes) else str(t.name),
            shape,
            dtype,
            scale,
            zero,
            axis,
            None,
        )
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buffer is not None and buffer.offset and buffer.offset > 1:
            raise UnsupportedModel(
                f"tensor {tensor.name!r}: weights stored outside the flatbuffer are not supported"
            )
        if buffer is not None and buffer.data is not None and len(buffer.data) > 0:
            raw = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), dtype=dtype).reshape(shape)
            tensor.constant = tensor.dequantize(raw)
        tensors[index] = tensor

    ops: list[Op] = []
    counts: dict[str, int] = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"op {code.builtinCode}")
        if name not in SUPPORTED_OPS:
            raise UnsupportedModel(f"op {name} is not supported (supported: {', '.join(SUPPORTED_OPS)})")
        counts[name] = counts.get(name, 0) + 1
        options = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
        if "fusedActivationFunction" in options:
            activation = activations.get(options["fusedActivationFunction"], "?")
            if activation not in ("NONE", "RELU", "RELU6"):
                raise UnsupportedModel(f"op {name}: fused activation {activation} is not supported")
            options["activation"] = activation
        if "padding" in options:
            options["padding"] = paddings[options["padding"]]
        outputs = [int(i) for i in op.outputs]
        if len(outputs) != 1:
            raise UnsupportedModel(f"op {name} with {len(outputs)} outputs is not supported")
        ops.append(Op(name, [int(i) for i in op.inputs], outputs[0], options))

    inputs, outputs = [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModel(f"{len(inputs)} inputs and {len(outputs)} outputs: expected one of each")
    image = tensors[inputs[0]]
    if len(image.shape) != 4 or image.shape[3] != 3:
        raise UnsupportedModel(f"input shape {list(image.shape)} is not an image batch [N, H, W, 3]")
    if image.dtype != np.float32 and not image.quantized:
        raise UnsupportedModel(f"input type {image.dtype.name} without quantization is not supported")
    return Graph(tensors, ops, inputs[0], outputs[0], _logits_tensor(ops, outputs[0]), counts)


def _logits_tensor(ops: list[Op], output: int) -> int:
    """The final SOFTMAX's input, looking back through format-only ops; the output when there is none."""
    producer = {op.output: op for op in ops}
    tensor = output
    while tensor in producer and producer[tensor].name in _FORMAT_OPS:
        tensor = producer[tensor].inputs[0]
    if tensor in producer and producer[tensor].name == "SOFTMAX":
        return producer[tensor].inputs[0]
    return output


# --- the ops in TensorFlow (one definition: the SavedModel's graph and the per-op check both call them) ---


def _activation(tf: Any, value: Any, name: str) -> Any:
    if name == "RELU":
        return tf.nn.relu(value)
    if name == "RELU6":
        return tf.nn.relu6(value)
    return value


def _strides(options: dict[str, Any]) -> list[int]:
    return [1, options["strideH"], options["strideW"], 1]


def _dilations(options: dict[str, Any]) -> list[int]:
    return [1, options.get("dilationHFactor", 1), options.get("dilationWFactor", 1), 1]


def _conv_weights(op: Op, weights: np.ndarray) -> np.ndarray:
    if op.name == "CONV_2D":
        return np.ascontiguousarray(weights.transpose(1, 2, 3, 0))  # OHWI -> HWIO
    multiplier = int(op.options.get("depthMultiplier", 1)) or 1
    _, kh, kw, channels = weights.shape
    # [1, kh, kw, C * M] -> [kh, kw, C, M]
    return np.ascontiguousarray(weights.reshape(kh, kw, channels // multiplier, multiplier))


def prepared_constants(graph: Graph) -> dict[int, np.ndarray]:
    """Every constant tensor in TensorFlow's layout (conv weights transposed)."""
    constants = {i: t.constant for i, t in graph.tensors.items() if t.constant is not None}
    for op in graph.ops:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weights = graph.tensors[op.inputs[1]].constant
            if weights is None or weights.ndim != 4:
                raise UnsupportedModel(f"op {op.name}: weights must be a constant 4-D tensor")
            constants[op.inputs[1]] = _conv_weights(op, weights)
    return constants


def apply_op(tf: Any, op: Op, args: list[Any], graph: Graph) -> Any:
    """The float op on float inputs (constants already in TF layout)."""
    o = op.options
    if op.name in _FORMAT_OPS:
        return args[0]
    if op.name == "CONV_2D":
        out = tf.nn.conv2d(args[0], args[1], _strides(o), o["padding"], dilations=_dilations(o))
    elif op.name == "DEPTHWISE_CONV_2D":
        dilations = _dilations(o)[1:3]
        out = tf.nn.depthwise_conv2d(args[0], args[1], _strides(o), o["padding"], dilations=dilations)
    elif op.name == "ADD":
        out = args[0] + args[1]
    elif op.name == "AVERAGE_POOL_2D":
        out = tf.nn.avg_pool2d(args[0], [o["filterHeight"], o["filterWidth"]], _strides(o)[1:3], o["padding"])
    elif op.name == "MEAN":
        axes = [int(a) for a in np.asarray(graph.tensors[op.inputs[1]].constant).reshape(-1)]
        return tf.reduce_mean(args[0], axis=axes, keepdims=bool(o.get("keepDims", False)))
    elif op.name == "RESHAPE":
        return tf.reshape(args[0], _batch_free_shape(op, graph))
    elif op.name == "SOFTMAX":
        return tf.nn.softmax(args[0] * o.get("beta", 1.0))
    else:  # read_graph refuses the rest
        raise UnsupportedModel(f"op {op.name} is not supported")
    if len(args) > 2 and op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        out = out + args[2]
    return _activation(tf, out, o.get("activation", "NONE"))


def _batch_free_shape(op: Op, graph: Graph) -> list[int]:
    """RESHAPE's target with its first (batch) dimension open, so that the SavedModel takes any batch."""
    if len(op.inputs) > 1 and graph.tensors[op.inputs[1]].constant is not None:
        target = [int(d) for d in np.asarray(graph.tensors[op.inputs[1]].constant).reshape(-1)]
    else:
        target = [int(d) for d in (op.options.get("newShape") or graph.tensors[op.output].shape)]
    if not target or target[0] not in (1, -1):
        raise UnsupportedModel(f"op RESHAPE to {target}: only reshapes that keep the batch dimension first")
    return [-1, *target[1:]]


def _op_inputs(op: Op) -> list[int]:
    """The tensor inputs an op's float form takes (RESHAPE's shape and MEAN's axes are read as constants)."""
    if op.name in ("RESHAPE", "MEAN"):
        return op.inputs[:1]
    return [i for i in op.inputs if i >= 0]


# --- the SavedModel ---


def build_forward(graph: Graph, constants: dict[int, Any]) -> Callable[[Any], Any]:
    """images [N, H, W, 3] in [0, 1] -> logits, with the ops up to the logits tensor."""
    import tensorflow as tf

    image = graph.tensors[graph.input]
    low, high = image.real_range() if image.quantized else (0.0, 1.0)
    producer = {op.output: position for position, op in enumerate(graph.ops)}
    last = producer.get(graph.logits, -1)

    def forward(images: Any) -> Any:
        values: dict[int, Any] = {graph.input: images * (high - low) + low}
        for op in graph.ops[: last + 1]:
            args = [values[i] if i in values else constants[i] for i in _op_inputs(op)]
            values[op.output] = apply_op(tf, op, args, graph)
        return values[graph.logits]

    return forward


def save_savedmodel(graph: Graph, destination: Path) -> int:
    """Write the SavedModel; returns its parameter count."""
    import tensorflow as tf

    constants = prepared_constants(graph)
    weight_ids = sorted(i for i, c in constants.items() if c.dtype == np.float32)
    image = graph.tensors[graph.input]
    height, width = image.shape[1], image.shape[2]

    class Dequantized(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = [tf.Variable(constants[i], trainable=False, name=f"t{i}") for i in weight_ids]

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])
        def __call__(self, inputs: Any) -> Any:
            variables = dict(zip(weight_ids, self.weights, strict=True))
            return build_forward(graph, {**constants, **variables})(inputs)

    module = Dequantized()

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="inputs")])
    def serving(inputs: Any) -> dict[str, Any]:
        return {"logits": module(inputs)}

    tf.saved_model.save(module, str(destination), signatures={"serving_default": serving})
    return int(sum(constants[i].size for i in weight_ids))


# --- verification against the interpreter ---


def _interpreter(flatbuffer: bytes, preserve: bool) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # No delegates: XNNPACK would fuse ops and free their intermediate tensors.
    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=preserve,
    )
    interpreter.allocate_tensors()
    return interpreter


def quantized_input(image_tensor: Tensor, pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> the .tflite's input: q = qmin + pixel for a quantized input (the LiteRT backend's
    mapping, pixel 0..255 onto the type's whole range), pixels / 255 for a float one."""
    if not image_tensor.quantized:
        return (pixels.astype(np.float32) / 255.0).astype(np.float32)
    low, high = image_tensor.real_range()
    assert image_tensor.scale is not None and image_tensor.zero_point is not None
    scale, zero = float(image_tensor.scale[0]), float(image_tensor.zero_point[0])
    limits = np.iinfo(image_tensor.dtype)
    real = low + pixels.astype(np.float64) * (high - low) / 255.0
    return np.clip(np.round(real / scale + zero), limits.min, limits.max).astype(image_tensor.dtype)


def check_ops(flatbuffer: bytes, graph: Graph, probes: np.ndarray) -> dict[str, Any]:
    """Each op, fed the interpreter's own (dequantized) inputs, against the interpreter's output.

    The float output is clipped to the output tensor's representable range (the interpreter saturates
    there, the float model does not), and must lie within STEP_TOLERANCE quantization steps of it."""
    import tensorflow as tf

    interpreter = _interpreter(flatbuffer, preserve=True)
    constants = prepared_constants(graph)
    image = graph.tensors[graph.input]
    worst: dict[str, Any] = {"steps": 0.0}
    saturated: set[str] = set()
    for pixels in probes:
        interpreter.set_tensor(graph.input, quantized_input(image, pixels[None]))
        interpreter.invoke()
        for position, op in enumerate(graph.ops):
            args = []
            for i in _op_inputs(op):
                if i in constants:
                    args.append(constants[i])
                else:
                    args.append(graph.tensors[i].dequantize(interpreter.get_tensor(i)))
            ours = np.asarray(apply_op(tf, op, args, graph), np.float32)
            out = graph.tensors[op.output]
            theirs = out.dequantize(interpreter.get_tensor(op.output))
            if out.quantized:
                low, high = out.real_range()
                assert out.scale is not None
                clipped = np.clip(ours, low, high)
                # Beyond one step past the range: the layer saturates (a RELU6 ending at 6 does not).
                if np.any(ours > high + out.scale[0]) or np.any(ours < low - out.scale[0]):
                    saturated.add(f"{position} {op.name} ({out.name.split(';')[0]})")
                steps = float(np.max(np.abs(clipped - theirs)) / out.scale[0])
            else:
                steps = float(np.max(np.abs(ours - theirs))) / FLOAT_ATOL
            if steps > worst["steps"]:
                worst = {"steps": steps, "op": position, "name": op.name, "tensor": out.name}
    passed = worst["steps"] <= STEP_TOLERANCE + 1e-3
    return {
        "ops": len(graph.ops),
        "probes": len(probes),
        "max_steps": round(worst["steps"], 4),
        "worst_op": {k: v for k, v in worst.items() if k != "steps"},
        "saturating_ops": sorted(saturated, key=lambda s: int(s.split()[0])),
        "tolerance_steps": STEP_TOLERANCE,
        "passed": passed,
    }


def tflite_probabilities(flatbuffer: bytes, pixels: np.ndarray) -> np.ndarray:
    """A .tflite's own answers (its output dequantized, as it is) for uint8 images [N, H, W, 3].

    Reads only the interpreter's input and output details, so it takes any single-input classifier
    (an int8 file of a TF Hub model has ops `read_graph` does not rebuild)."""
    interpreter = _interpreter(flatbuffer, preserve=False)
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = source["quantization"]
    dtype = np.dtype(source["dtype"])
    image = Tensor(
        -1,
        "input",
        tuple(source["shape"]),
        dtype,
        np.array([scale]) if scale else None,
        np.array([zero]) if scale else None,
        0,
        None,
    )
    out_scale, out_zero = target["quantization"]
    rows = []
    for one in pixels:
        interpreter.set_tensor(source["index"], quantized_input(image, one[None]))
        interpreter.invoke()
        raw = interpreter.get_tensor(target["index"]).reshape(-1).astype(np.float64)
        rows.append(out_scale * (raw - out_zero) if out_scale else raw)
    return np.stack(rows).astype(np.float32)


def savedmodel_probabilities(saved_model_dir: Path, pixels: np.ndarray) -> np.ndarray:
    """The rebuilt SavedModel, loaded back from disk, through serving_default: pixels / 255 -> softmax."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    logits = loaded.signatures["serving_default"](inputs=tf.constant(pixels, tf.float32) / 255.0)["logits"]
    return tf.nn.softmax(logits).numpy()


def compare_answers(theirs: np.ndarray, ours: np.ndarray, step: float = 0.0) -> dict[str, Any]:
    """Top-1 agreement and |delta p|. A quantized output rounds probabilities to its step, so classes
    within one step of its maximum are tied there (the fixture answers 0.445 for two classes on
    rocket_1920x1080.jpg): any of them counts as its top-1."""
    ours_top = ours.argmax(axis=1)
    rows = np.arange(len(theirs))
    agree = theirs[rows, ours_top] >= theirs.max(axis=1) - step - 1e-7
    diff = np.abs(theirs - ours)
    return {
        "images": len(theirs),
        "top1_agree": int(agree.sum()),
        "mean_abs_diff": round(float(diff.mean()), 6),
        "max_abs_diff": round(float(diff.max()), 4),
    }


@dataclass(frozen=True)
class Conversion:
    parameters: int
    op_counts: dict[str, int]
    input_mapping: str
    op_check: dict[str, Any]
    answers: dict[str, Any]
    seconds: float

    @property
    def passed(self) -> bool:
        return bool(self.op_check["passed"]) and self.answers["top1_agree"] == self.answers["images"]

    def record(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "ops": self.op_counts,
            "input_mapping": self.input_mapping,
            "per_op_check": self.op_check,
            "top1_check": self.answers,
            "seconds": round(self.seconds, 1),
            "passed": self.passed,
        }


def dequantize(tflite: Path, destination: Path, photos: list[Path]) -> Conversion:
    """Rebuild `tflite` as a float32 SavedModel in `destination` and check it against the interpreter:
    every op on synthetic probes and the photos, top-1 on the photos (on the probes when there are none)."""
    from modelbuild.images import load_batch, synthetic_probes

    started = time.monotonic()
    flatbuffer = tflite.read_bytes()
    graph = read_graph(flatbuffer)
    parameters = save_savedmodel(graph, destination)
    image = graph.tensors[graph.input]
    size = (image.shape[1], image.shape[2])
    low, high = image.real_range() if image.quantized else (0.0, 1.0)
    probes = synthetic_probes(size)
    pictures = load_batch(photos, size) if photos else None
    op_check = check_ops(
        flatbuffer, graph, probes if pictures is None else np.concatenate([probes, pictures])
    )
    answer_images = probes if pictures is None else pictures
    theirs = tflite_probabilities(flatbuffer, answer_images)
    if graph.logits == graph.output:  # no final softmax: the .tflite answers logits too
        theirs = _softmax(theirs)
    output = graph.tensors[graph.output]
    step = float(output.scale[0]) if output.quantized and output.scale is not None else 0.0
    answers = compare_answers(theirs, savedmodel_probabilities(destination, answer_images), step)
    answers["on"] = "synthetic probes" if pictures is None else "photos"
    return Conversion(
        parameters=parameters,
        op_counts=graph.op_counts,
        input_mapping=f"[0, 1] -> [{low:g}, {high:g}] (the .tflite input's real range)",
        op_check=op_check,
        answers=answers,
        seconds=time.monotonic() - started,
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
