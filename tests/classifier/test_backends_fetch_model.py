"""fetch_model.py, the image build's model step, with local sources (no network here)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import fetch_model
import numpy as np
import pytest

from classifier.backends import load_backend
from tests.classifier.model_fixtures import (
    StandinModel,
    imagenet_dir_fixture,  # noqa: F401 (pytest finds fixtures by name in this module)
    standin_labels,
    standin_model_fixture,  # noqa: F401
    standin_tflite_fixture,  # noqa: F401
    write_labels,
)

SCRIPT = Path(__file__).resolve().parents[2] / "services" / "classifier" / "fetch_model.py"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fetched_savedmodel(standin_model: StandinModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fetched") / "model"
    argv = ["--source", str(standin_model.saved_model_dir), "--labels", str(standin_model.labels_path)]
    assert fetch_model.main([*argv, "--tflite", "float32", "--out", str(out)]) == 0
    return out


def test_a_savedmodel_source_is_copied_converted_and_verified(
    fetched_savedmodel: Path, standin_model: StandinModel
) -> None:
    out = fetched_savedmodel
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model.tflite",
        "saved_model",
    ]
    assert (out / "saved_model" / "saved_model.pb").read_bytes() == (
        standin_model.saved_model_dir / "saved_model.pb"
    ).read_bytes()
    assert (out / "labels.txt").read_text().splitlines() == standin_labels()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == str(standin_model.saved_model_dir)
    assert manifest["source_kind"] == "savedmodel"
    for name in ("labels.txt", "model.tflite"):
        assert manifest["files"][name]["sha256"] == sha256(out / name)
        assert manifest["files"][name]["bytes"] == (out / name).stat().st_size
    assert manifest["files"]["labels.txt"]["labels"] == 1001
    tree = manifest["files"]["saved_model"]
    assert tree["files"] == sum(1 for p in (out / "saved_model").rglob("*") if p.is_file())
    assert tree["sha256"] == fetch_model.describe_tree(standin_model.saved_model_dir)["sha256"]
    assert len(manifest["made"]) == 2
    verification = manifest["verification"]
    assert verification["verified"] is True
    assert verification["max_probability_diff_tflite_vs_saved_model"] < 1e-4


def test_the_converted_tflite_serves_like_the_savedmodel(fetched_savedmodel: Path) -> None:
    labels = str(fetched_savedmodel / "labels.txt")
    tf_backend = load_backend(
        "tf", str(fetched_savedmodel / "saved_model"), labels, threads=1, inter_op_threads=1
    )
    litert = load_backend(
        "litert", str(fetched_savedmodel / "model.tflite"), labels, threads=1, inter_op_threads=1
    )
    images = np.random.default_rng(7).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(litert.predict(images), tf_backend.predict(images), atol=1e-4)


def test_no_tflite_is_made_when_not_asked(standin_model: StandinModel, tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.tflite").write_bytes(b"stale, from an earlier run")
    argv = ["--source", str(standin_model.saved_model_dir), "--labels", str(standin_model.labels_path)]
    assert fetch_model.main([*argv, "--tflite", "none", "--no-verify", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "manifest.json", "saved_model"]
    assert json.loads((out / "manifest.json").read_text())["verification"]["verified"] is False


def test_the_real_tflite_is_copied_by_the_command_line(imagenet_dir: Path, tmp_path: Path) -> None:
    # As the Dockerfile runs it: a script in the service folder, verifying with the service's backends.
    source = imagenet_dir / "mobilenet_v2_1.0_224_quant.tflite"
    out = tmp_path / "model"
    command = [
        sys.executable,
        str(SCRIPT),
        "--source",
        str(source),
        "--labels",
        str(imagenet_dir / "imagenet_labels.txt"),
    ]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [*command, "--tflite", "float32", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "[fetch_model] verifying model.tflite with the litert backend" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "manifest.json", "model.tflite"]
    assert sha256(out / "model.tflite") == sha256(source)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_kind"] == "tflite"
    assert manifest["verification"]["model.tflite"]["input_dtype"] == "uint8"
    assert manifest["verification"]["model.tflite"]["outputs"] == "probabilities"


def test_the_standin_tflite_is_copied(
    standin_model: StandinModel, standin_tflite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    argv = ["--source", str(standin_tflite), "--labels", str(standin_model.labels_path), "--out", str(out)]
    assert fetch_model.main(argv) == 0
    assert sha256(out / "model.tflite") == sha256(standin_tflite)
    assert json.loads((out / "manifest.json").read_text())["verification"]["verified"] is True


@pytest.fixture(scope="module")
def model_server(
    standin_model: StandinModel, standin_tflite: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """HTTP on 127.0.0.1 serving the stand-in as a TF Hub-style .tar.gz and as a .tflite, and its labels."""
    root = tmp_path_factory.mktemp("served")
    with tarfile.open(root / "standin.tar.gz", "w:gz") as archive:
        archive.add(standin_model.saved_model_dir, arcname=".")
    (root / "model.tflite").write_bytes(standin_tflite.read_bytes())
    (root / "labels.txt").write_bytes(standin_model.labels_path.read_bytes())

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=root)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_hub_url_is_downloaded_with_tensorflow_hub(
    model_server: str, standin_model: StandinModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorflow_hub", reason="tensorflow-hub (and tf-keras) are build-time dependencies")
    monkeypatch.setenv(
        "TFHUB_CACHE_DIR", str(tmp_path / "unused")
    )  # fetch_model sets its own; restored after
    out = tmp_path / "model"
    argv = ["--source", f"{model_server}/standin.tar.gz", "--labels", f"{model_server}/labels.txt"]
    assert fetch_model.main([*argv, "--tflite", "none", "--out", str(out)]) == 0
    assert (out / "saved_model" / "saved_model.pb").read_bytes() == (
        standin_model.saved_model_dir / "saved_model.pb"
    ).read_bytes()
    assert (out / "labels.txt").read_text().splitlines() == standin_labels()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_kind"] == "savedmodel"
    assert manifest["verification"]["saved_model"]["num_classes"] == 1001


def test_a_tflite_url_is_downloaded_as_is(model_server: str, standin_tflite: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    argv = ["--source", f"{model_server}/model.tflite", "--labels", f"{model_server}/labels.txt"]
    assert fetch_model.main([*argv, "--out", str(out)]) == 0
    assert sha256(out / "model.tflite") == sha256(standin_tflite)


def test_unreachable_urls_fail_with_a_message(
    model_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorflow_hub", reason="tensorflow-hub (and tf-keras) are build-time dependencies")
    labels = f"{model_server}/labels.txt"
    out = str(tmp_path / "out")
    error = run_failing(
        ["--source", f"{model_server}/missing.tar.gz", "--labels", labels, "--out", out], capsys
    )
    assert "cannot download the model" in error
    assert "404" in error
    error = run_failing(
        ["--source", f"{model_server}/missing.tflite", "--labels", labels, "--out", out], capsys
    )
    assert "cannot download" in error
    error = run_failing(
        ["--source", f"{model_server}/model.tflite", "--labels", f"{labels}.nope", "--out", out], capsys
    )
    assert "cannot download" in error


def run_failing(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert fetch_model.main(argv) == 1
    return capsys.readouterr().err


def test_bad_sources_fail_with_a_message(
    tmp_path: Path, standin_model: StandinModel, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = str(standin_model.labels_path)
    out = str(tmp_path / "out")
    assert "neither a URL" in run_failing(
        ["--source", str(tmp_path / "nope"), "--labels", labels, "--out", out], capsys
    )
    assert "without saved_model.pb" in run_failing(
        ["--source", str(tmp_path), "--labels", labels, "--out", out], capsys
    )
    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_bytes(b"\0" * 16)
    assert "not a .tflite" in run_failing(
        ["--source", str(not_a_model), "--labels", labels, "--out", out], capsys
    )
    source = str(standin_model.saved_model_dir)
    missing_labels = str(tmp_path / "labels.txt")
    assert "does not exist" in run_failing(
        ["--source", source, "--labels", missing_labels, "--out", out], capsys
    )
    assert "must not be empty" in run_failing(["--source", "", "--labels", labels, "--out", out], capsys)


def test_a_tflite_that_does_not_load_fails_verification(
    tmp_path: Path, standin_model: StandinModel, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer" * 8)
    argv = [
        "--source",
        str(broken),
        "--labels",
        str(standin_model.labels_path),
        "--out",
        str(tmp_path / "out"),
    ]
    assert "does not load in the service's litert backend" in run_failing(argv, capsys)


def test_labels_that_do_not_fit_fail_verification(
    tmp_path: Path, standin_tflite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = write_labels(tmp_path / "labels.txt", standin_labels()[:10])
    argv = ["--source", str(standin_tflite), "--labels", str(labels), "--out", str(tmp_path / "out")]
    assert "10 labels" in run_failing(argv, capsys)


def test_kaggle_handles_and_urls_are_recognised() -> None:
    assert fetch_model.KAGGLE_HANDLE.match("google/mobilenet-v2/tensorFlow2/100-224-classification/2")
    assert fetch_model.KAGGLE_HANDLE.match("google/mobilenet-v2/tensorFlow2/100-224-classification")
    assert not fetch_model.KAGGLE_HANDLE.match("models/model.tflite")
    assert fetch_model.is_url("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5")
    assert not fetch_model.is_url("/opt/model")


def test_the_build_lays_out_every_file_a_backend_serves() -> None:
    """fetch_model.py cannot import the service (the model stage copies only the build scripts): its file
    names and the service's BACKEND_KINDS are two statements of one layout, kept in step here."""
    from classifier.backends import BACKEND_KINDS

    served = {kind.model_file for kind in BACKEND_KINDS.values()}
    assert served == {"saved_model", *fetch_model.TFLITE_FILES.values()}
    for number_format, name in fetch_model.TFLITE_FILES.items():
        kind = "litert" if number_format == "float32" else f"litert-{number_format}"
        assert BACKEND_KINDS[kind].model_file == name


def test_the_lab_compares_every_backend_the_service_has() -> None:
    from classifier.backends import BACKEND_KINDS
    from lab.grid import BACKENDS

    assert tuple(BACKEND_KINDS) == BACKENDS
