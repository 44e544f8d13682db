"""The settings class and the gunicorn configuration built from it."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest
from gunicorn.config import Config
from pydantic import ValidationError

from classifier.settings import Settings

CONF = Path(__file__).resolve().parents[2] / "services" / "classifier" / "gunicorn.conf.py"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("CLASSIFIER_"):
            monkeypatch.delenv(name)
    # Running gunicorn.conf.py sets this; monkeypatch puts the original state back afterwards.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.backend == "tf"
    assert settings.model_dir == Path("/opt/model")
    assert settings.model_path == Path("/opt/model/saved_model")
    assert settings.labels_path == Path("/opt/model/labels.txt")
    assert settings.top_k == 5
    assert settings.max_batch_size == 1
    assert settings.url_allowlist == ["nginx"]
    assert settings.workers == 1
    assert settings.port == 8000


def test_environment_overrides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CLASSIFIER_BACKEND", "litert")
    clean_env.setenv("CLASSIFIER_MODEL_DIR", "/models/x")
    clean_env.setenv("CLASSIFIER_URL_ALLOWLIST", " nginx, Images.Example.ORG. ,,*.cdn.example ")
    clean_env.setenv("CLASSIFIER_MAX_BATCH_SIZE", "16")
    clean_env.setenv("CLASSIFIER_MAX_BATCH_DELAY_MS", "2.5")
    settings = Settings()
    assert settings.model_path == Path("/models/x/model.tflite")
    assert settings.url_allowlist == ["nginx", "images.example.org", "*.cdn.example"]
    assert (settings.max_batch_size, settings.max_batch_delay_ms) == (16, 2.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLASSIFIER_BACKEND", "onnx"),
        ("CLASSIFIER_MAX_BATCH_SIZE", "0"),
        ("CLASSIFIER_THREADS", "-1"),
        ("CLASSIFIER_CPUS", "-0.5"),
        ("CLASSIFIER_TOP_K", "zero"),
        ("CLASSIFIER_PORT", "70000"),
        ("CLASSIFIER_URL_TIMEOUT_S", "0"),
    ],
)
def test_invalid_values_fail_fast(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("cpus", "workers", "threads"),
    [("", "1", 1), ("0", "1", 1), ("0.5", "1", 1), ("1", "1", 1), ("1.5", "1", 2), ("2", "1", 2),
     ("2", "2", 1), ("3", "2", 2), ("0.5", "4", 1)],
)  # fmt: skip
def test_inference_threads_follow_the_cpu_budget(
    clean_env: pytest.MonkeyPatch, cpus: str, workers: str, threads: int
) -> None:
    # compose passes CLASSIFIER_THREADS=0 (derive) and the budget; never more threads than cores budgeted.
    clean_env.setenv("CLASSIFIER_THREADS", "0")
    clean_env.setenv("CLASSIFIER_CPUS", cpus)
    clean_env.setenv("CLASSIFIER_WORKERS", workers)
    settings = Settings()
    assert settings.threads == threads
    assert settings.cpus == (float(cpus) if cpus else 0.0)


def test_threads_given_win_over_the_budget(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CLASSIFIER_THREADS", "3")
    clean_env.setenv("CLASSIFIER_CPUS", "1")
    assert Settings().threads == 3


def test_every_field_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 15, f"{name} has no documentation"
        assert field.default is not None or field.default_factory is not None, f"{name} has no default"


def load_conf() -> tuple[dict[str, object], Config]:
    namespace = runpy.run_path(str(CONF))
    config = Config()
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    return namespace, config


def test_gunicorn_conf_reads_the_settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("CLASSIFIER_WORKERS", "3")
    clean_env.setenv("CLASSIFIER_BIND_HOST", "127.0.0.1")
    clean_env.setenv("CLASSIFIER_PORT", "9123")
    clean_env.setenv("CLASSIFIER_TIMEOUT_S", "77")
    clean_env.setenv("CLASSIFIER_KEEPALIVE_S", "61")
    clean_env.setenv("CLASSIFIER_METRICS_DIR", str(tmp_path / "metrics"))
    namespace, config = load_conf()

    # Every public name in the file is a gunicorn setting: a typo would otherwise be ignored silently.
    imports = {"annotations", "os", "sys", "Path", "Settings"}
    unknown = {n for n in namespace if not n.startswith("_") and n not in imports} - set(config.settings)
    assert not unknown

    assert config.worker_class_str == "uvicorn_worker.UvicornWorker"
    assert config.workers == 3
    assert config.address == [("127.0.0.1", 9123)]
    assert config.timeout == 77
    assert config.keepalive == 61
    assert config.settings["control_socket_disable"].get() is True
    assert config.preload_app is False
    assert config.settings["wsgi_app"].get() == "classifier.main:app"

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")


def test_gunicorn_start_empties_the_metrics_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_123.db").write_bytes(b"stale")
    (metrics_dir / "notes.txt").write_text("not ours")
    clean_env.setenv("CLASSIFIER_METRICS_DIR", str(metrics_dir))
    namespace, _config = load_conf()
    namespace["on_starting"](None)  # type: ignore[operator]
    assert sorted(p.name for p in metrics_dir.iterdir()) == ["notes.txt"]
