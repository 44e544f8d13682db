"""The tutorial's model and preprocessing, shared by the baseline server and the bare loop that times them.

As blog posts serve a TF Hub classifier: the model wrapped in `tf_keras.Sequential([hub.KerasLayer(...)])`,
the upload decoded at full size with PIL, resized, scaled to [0, 1], and `model.predict(x)` per request.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_hub as hub
import tf_keras
from PIL import Image

IMAGE_SHAPE = (224, 224)


def load_model(saved_model_dir: str) -> tf_keras.Model:
    return tf_keras.Sequential([hub.KerasLayer(saved_model_dir, input_shape=(*IMAGE_SHAPE, 3))])


def preprocess(contents: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(contents)).convert("RGB").resize(IMAGE_SHAPE)
    return np.array(image, dtype=np.float32)[np.newaxis, ...] / 255.0
