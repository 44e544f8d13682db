"""Every knob of the classifier service, read from `CLASSIFIER_*` environment variables.

The same class serves the app (inside each worker) and `gunicorn.conf.py` (in the master), so each setting is
defined exactly once. Each field's docstring is its documentation (with its unit); `.env` mirrors them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from classifier.backends import BACKEND_KINDS

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLASSIFIER_",
        extra="ignore",
        use_attribute_docstrings=True,
        # `model_dir` and friends are ours, not pydantic's protected `model_` namespace.
        protected_namespaces=(),
    )

    # --- model ---
    backend: str = "tf"
    """Inference backend: `tf` (<model_dir>/saved_model), `litert` (float32 <model_dir>/model.tflite),
    `litert-uint8` (model-uint8.tflite, a quantized file given to the build) or `litert-int8`
    (model-int8.tflite, quantized at build time); the image has only those its MODEL_TFLITE made."""
    model_dir: Path = Path("/opt/model")
    """Directory holding saved_model/ and/or model.tflite, plus labels.txt (one label per line)."""
    threads: int = Field(0, ge=0)
    """Threads one inference call may use (TF intra-op / LiteRT interpreter threads), per worker process; 0:
    derived from the CPU budget (`inference_threads_for`: ceil(cpus / workers), 1 without a budget)."""
    inter_op_threads: int = Field(1, ge=1)
    """TF inter-op threads per worker process (ignored by litert)."""
    decode_threads: int = Field(2, ge=1)
    """Threads per worker process that decode and resize uploaded images (off the event loop) when batching is
    on; with batching off the inference thread decodes each image right before its model call."""
    top_k: int = Field(5, ge=1)
    """How many labels each answer lists in `top_k` (count)."""

    cpus: float = Field(0.0, ge=0.0)
    """CPU budget of one replica (cores, may be fractional); the same value sets the container's CPU limit
    (compose and Swarm `deploy.resources.limits.cpus`, Kubernetes `limits.cpu`). 0: no limit."""

    # --- adaptive batching ---
    max_batch_size: int = Field(1, ge=1, le=256)
    """Most images one model call may take (count); 1 turns batching off."""
    max_batch_delay_ms: float = Field(2.0, ge=0.0, le=1000.0)
    """Longest wait after a batch's first request for more (milliseconds); unused when batching is off."""

    # --- request limits ---
    max_upload_bytes: int = Field(10 * MIB, ge=1)
    """Largest accepted image upload (bytes); bigger uploads get 413 before the body is read in full."""
    multipart_overhead_bytes: int = Field(64 * 1024, ge=0)
    """Room for multipart framing (boundaries, part headers) around an upload of the largest size (bytes): the
    classifier and nginx both accept request bodies up to max_upload_bytes plus this."""
    url_allowlist: Annotated[list[str], NoDecode] = ["nginx"]
    """Comma-separated hosts `img_url` may name: exact hostnames or IPs (may resolve to private addresses), or
    `*` / `*.domain` wildcards (public addresses only)."""
    url_timeout_s: float = Field(5.0, gt=0.0)
    """Whole-fetch deadline for an `img_url` (seconds): DNS, connect, redirects and body together."""
    url_max_bytes: int = Field(10 * MIB, ge=1)
    """Largest image fetched from an `img_url` (bytes); the download stops as soon as it passes this."""
    url_max_redirects: int = Field(3, ge=0)
    """Redirects followed for an `img_url` (count); every hop is checked against the allowlist again."""

    # --- gunicorn (read by gunicorn.conf.py) ---
    workers: int = Field(1, ge=1)
    """gunicorn worker processes per replica; each loads its own copy of the model."""
    bind_host: str = "0.0.0.0"
    """Address gunicorn listens on."""
    port: int = Field(8000, ge=1, le=65535)
    """TCP port gunicorn listens on."""
    timeout_s: int = Field(120, ge=1)
    """gunicorn worker timeout (seconds): must cover model load and warm-up, during which a worker sends no
    heartbeat."""
    graceful_timeout_s: int = Field(30, ge=1)
    """Time a worker gets to finish in-flight requests on shutdown (seconds)."""
    keepalive_s: int = Field(75, ge=0)
    """Idle keep-alive timeout of client connections (seconds); longer than nginx's upstream idle timeout (60)
    so the classifier never closes a connection nginx is about to reuse."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of gunicorn and the app."""
    access_log: bool = False
    """Log one line per request (costs CPU under load)."""
    metrics_dir: Path = Path("/tmp/classifier-metrics")
    """Directory for prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR), emptied at start."""

    @field_validator("cpus", mode="before")
    @classmethod
    def _empty_is_no_budget(cls, value: object) -> object:
        # An empty CLASSIFIER_CPUS means no limit, as it does for compose (`${CLASSIFIER_CPUS:-0}`).
        return 0.0 if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _derive_threads(self) -> Settings:
        if self.threads == 0:
            self.threads = inference_threads_for(self.cpus, self.workers)
        return self

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKEND_KINDS:
            raise ValueError(f"unknown backend {value!r}: expected one of {', '.join(BACKEND_KINDS)}")
        return value

    @field_validator("url_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @field_validator("url_allowlist")
    @classmethod
    def _normalise_hosts(cls, hosts: list[str]) -> list[str]:
        # Hostnames compare case-insensitively and a trailing dot names the same host.
        return [host.lower().rstrip(".") for host in hosts]

    @property
    def model_path(self) -> Path:
        return self.model_dir / BACKEND_KINDS[self.backend].model_file

    @property
    def labels_path(self) -> Path:
        return self.model_dir / "labels.txt"


def inference_threads_for(cpus: float, workers: int) -> int:
    """Inference threads per worker process for a replica's CPU budget: the budget rounded up, shared by its
    workers, at least 1. TensorFlow and LiteRT otherwise size their pools by the host's cores, which a CFS
    quota does not hide: 2 threads against a 1-core quota spend the quota in half a period and then wait
    out the rest (throttled), which is tail latency the budget did not ask for."""
    if cpus <= 0:
        return 1
    return max(1, math.ceil(cpus / workers))
