"""What both backends share: checking batches, telling logits from probabilities, softmax."""

from __future__ import annotations

import numpy as np


class ModelError(RuntimeError):
    """The model cannot be loaded or does not have the shape of an image classifier."""


def check_batch(batch: np.ndarray, input_size: tuple[int, int]) -> None:
    expected = (*input_size, 3)
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != expected or batch.shape[0] == 0:
        raise ValueError(
            f"expected a uint8 batch of shape [N>0, {expected[0]}, {expected[1]}, 3], "
            f"got {batch.dtype} {list(batch.shape)}"
        )


def probe_batch(input_size: tuple[int, int]) -> np.ndarray:
    """Three fixed images (flat grey, a gradient, seeded noise): loading warms up on them and looks at
    what the model answers for them to tell logits from probabilities."""
    height, width = input_size
    grey = np.full((height, width, 3), 128, np.uint8)
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    gradient = np.broadcast_to(ramp[None, :, None], (height, width, 3)).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.stack([grey, gradient, noise])


def are_probabilities(outputs: np.ndarray) -> bool:
    """True when every row lies in [0, 1] and sums to 1 (a softmax head); logits practically never pass.

    For float outputs only: uint8-quantized softmax outputs lose much of their sum to rounding (the
    fixture MobileNetV2 sums to 0.6 on a flat grey image), see `quantized_range_is_probability`."""
    if outputs.ndim != 2 or not np.all(np.isfinite(outputs)):
        return False
    sums = outputs.sum(axis=1, dtype=np.float64)
    return bool(outputs.min() >= -1e-6 and outputs.max() <= 1 + 1e-6 and np.all(np.abs(sums - 1) < 1e-3))


def quantized_range_is_probability(dtype: np.dtype, scale: float, zero_point: int) -> bool:
    """A quantized output whose whole representable range lies in [0, 1] (within one step) is a softmax
    output: a logit head is quantized over a range around 0 and several units wide."""
    limits = np.iinfo(dtype)
    low, high = scale * (limits.min - zero_point), scale * (limits.max - zero_point)
    return bool(low >= -scale and high <= 1 + scale)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)
