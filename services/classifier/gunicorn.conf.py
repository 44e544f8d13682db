"""gunicorn configuration: a bare `gunicorn` started in this folder reads it (./gunicorn.conf.py).

Every value comes from the classifier's settings class (CLASSIFIER_* variables), so there is no command line
for compose to override and no second place a knob is defined. No preload: each worker imports the app and
loads the model after the fork (TensorFlow and LiteRT do not survive a fork with their thread pools).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classifier.settings import Settings  # needs the sys.path entry above

_settings = Settings()

wsgi_app = "classifier.main:app"
worker_class = "uvicorn_worker.UvicornWorker"
workers = _settings.workers
bind = [f"{_settings.bind_host}:{_settings.port}"]
timeout = _settings.timeout_s
graceful_timeout = _settings.graceful_timeout_s
keepalive = _settings.keepalive_s
loglevel = _settings.log_level
accesslog = "-" if _settings.access_log else None
errorlog = "-"
preload_app = False
# gunicorn 27 otherwise creates a control socket under $HOME/.gunicorn, which a read-only container lacks.
control_socket_disable = True
# Worker heartbeat files in shared memory rather than on the container's overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Every worker writes its metrics to files here; /metrics on any worker aggregates the whole replica.
# Set before the fork, so each worker's prometheus-client starts in multiprocess mode.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_settings.metrics_dir)


def on_starting(server: object) -> None:
    # Files of a previous run would add stale counts; only prometheus-client's own *.db files are removed,
    # never anything else a misconfigured path might point at.
    metrics_dir = _settings.metrics_dir
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    # Drops the dead worker's live gauges (queue depth, in-flight, ready) from the replica's sums.
    multiprocess.mark_process_dead(worker.pid, str(_settings.metrics_dir))  # type: ignore[attr-defined]
