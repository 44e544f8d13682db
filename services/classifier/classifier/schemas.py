"""Request and answer bodies of the HTTP API (also what /docs and /openapi.json show)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_URL_LENGTH = 2048
"""Longest `img_url` accepted (characters)."""
# http or https in any letter case (a URI scheme is case-insensitive, and the fetcher accepts both).
HTTP_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://"


class UrlRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"img_url": "http://nginx/images/chelsea_640x480.jpg"}]},
    )

    # Validated as a plain string here: the fetcher answers a bad scheme or host with its own codes
    # (403 url_not_allowed, 422 invalid_url); the schema still tells clients what is accepted.
    img_url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="http(s) URL of an image on a host in CLASSIFIER_URL_ALLOWLIST",
        json_schema_extra={"format": "uri", "pattern": HTTP_URL_PATTERN},
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
    status_code: Literal[200] = Field(
        200,
        description="Always 200, the answer's HTTP status: kept for the tutorial's clients, which read it "
        "from the body",
    )


class ErrorBody(BaseModel):
    error: str = Field(description="Stable machine-readable code, see classifier/errors.py")
    detail: str


class Status(BaseModel):
    status: str


class Links(BaseModel):
    docs: str
    openapi: str
    model: str
    predict: str
    predict_tf: str


class ServiceInfo(BaseModel):
    service: str
    model: str | None = Field(description="Where the model came from; null while it is still loading")
    backend: str
    ready: bool
    links: Links = Field(description="Paths of the API's main pages")


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
