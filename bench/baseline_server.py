"""The tutorial-style baseline, written for the benchmark only: how a typical blog post serves a TF Hub model.

One uvicorn process, FastAPI, the model built once at start as `tf_keras.Sequential([hub.KerasLayer(...)])`,
and an `async def` endpoint that decodes with PIL, resizes, and calls `model.predict(x)` per request. The
blocking decode and predict run on the event loop, as in the tutorials: requests are served one at a time.
(Unlike the tutorial this comes from, it does not reload the model on every request; that would only make
the comparison more lopsided.)

    BENCH_BASELINE_MODEL=<SavedModel dir> BENCH_BASELINE_LABELS=<labels.txt> \
        uvicorn bench.baseline_server:app --host 127.0.0.1 --port 8100
"""

from __future__ import annotations

import os
from typing import Annotated

import numpy as np
import tensorflow as tf
from fastapi import FastAPI, File, UploadFile

from bench.tutorial import load_model, preprocess

model = load_model(os.environ["BENCH_BASELINE_MODEL"])
with open(os.environ["BENCH_BASELINE_LABELS"], encoding="utf-8") as labels_file:
    labels = labels_file.read().splitlines()

app = FastAPI(title="tutorial-style baseline")


@app.get("/")
async def root() -> dict[str, str]:
    return {"message": "image classifier is up"}


@app.post("/predict")
async def predict(file: Annotated[UploadFile, File()]) -> dict[str, object]:
    contents = await file.read()
    x = preprocess(contents)
    logits = model.predict(x)[0]
    probabilities = tf.nn.softmax(logits).numpy()
    top = int(np.argmax(probabilities))
    return {"predicted_label": labels[top], "probability": float(probabilities[top])}
