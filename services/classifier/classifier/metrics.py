"""Prometheus metrics of one replica.

gunicorn runs several worker processes per replica and a scrape lands on one of them, so under gunicorn
(PROMETHEUS_MULTIPROC_DIR set by gunicorn.conf.py) every process writes its values to files and /metrics
aggregates all of them. Without it (tests, a plain `uvicorn` run) each Metrics object has its own registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# `*_created` timestamps double the size of every scrape and nothing in the lab reads them.
disable_created_metrics()

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
PREDICT_ENDPOINTS = frozenset({"/predict", "/predict/tf"})
_KNOWN_ENDPOINTS = frozenset({*PREDICT_ENDPOINTS, "/", "/healthz", "/readyz", "/metrics", "/model"})


def endpoint_label(path: str) -> str:
    """Route the label to a fixed set so that scanners probing random paths cannot blow up cardinality."""
    path = path.rstrip("/") or "/"
    return path if path in _KNOWN_ENDPOINTS else "other"


class Metrics:
    def __init__(self) -> None:
        # prometheus-client picks file-backed values at import time from this variable, so it alone decides.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        # In multiprocess mode values go to files and the scrape reads the files, so nothing is registered.
        self._registry = None if self.multiprocess_dir else CollectorRegistry()
        registry = self._registry

        self.requests = Counter(
            "classifier_requests",
            "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "classifier_request_duration_seconds",
            "Time from request start to the end of the answer inside the worker (seconds).",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.worker_requests = Counter(
            "classifier_worker_requests",
            "Prediction requests handled by each worker process (by pid): shows uneven keep-alive spread.",
            ["pid"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "classifier_stage_duration_seconds",
            "Per-request time of one stage of a prediction: fetch, decode, queue, infer (seconds).",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "classifier_batch_size",
            "Images per model call.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth_gauge = Gauge(
            "classifier_queue_depth",
            "Decoded images waiting for a model call (summed over the replica's live workers).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.inflight = Gauge(
            "classifier_inflight_requests",
            "Requests being handled right now (summed over the replica's live workers).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.ready_workers = Gauge(
            "classifier_ready_workers",
            "Worker processes with the model loaded and warmed.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.model_info = Gauge(
            "classifier_model_info",
            "The model being served (value is always 1).",
            ["backend", "model", "input_size", "labels", "max_batch_size", "threads"],
            multiprocess_mode="max",
            registry=registry,
        )

    # --- batching.BatchObserver ---
    def queue_depth(self, depth: int) -> None:
        self.queue_depth_gauge.set(depth)

    def batch_done(self, size: int, infer_s: float) -> None:
        self.batch_size.observe(size)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(endpoint, method, code).inc()
        self.request_seconds.labels(endpoint, code).observe(seconds)
        if endpoint in PREDICT_ENDPOINTS:
            self.worker_requests.labels(str(os.getpid())).inc()

    def observe_stages(self, stages: dict[str, float]) -> None:
        for stage, seconds in stages.items():
            if stage != "total":
                self.stage_seconds.labels(stage).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        if self._registry is not None:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
