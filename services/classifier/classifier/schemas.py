"""Request and answer bodies of the HTTP API (also what /docs shows)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UrlRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    img_url: str = Field(
        min_length=1, max_length=2048, description="http(s) URL of an image on an allowed host"
    )


class LabelProbability(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    predicted_label: str
    probability: float = Field(ge=0.0, le=1.0)
    top_k: list[LabelProbability]
    backend: str
    batch_size: int = Field(description="Size of the model call this image was part of")


class ErrorBody(BaseModel):
    error: str = Field(description="Stable machine-readable code, see classifier/errors.py")
    detail: str


class BatchingInfo(BaseModel):
    enabled: bool
    max_batch_size: int
    max_batch_delay_ms: float


class ThreadInfo(BaseModel):
    intra_op: int
    inter_op: int
    decode: int


class ModelInfo(BaseModel):
    model: str
    model_path: str
    labels_path: str
    backend: str
    input_size: tuple[int, int]
    label_count: int
    top_k: int
    batching: BatchingInfo
    threads: ThreadInfo
    workers_per_replica: int
    pid: int
    hostname: str
    backend_info: dict[str, object]
