"""The HTTP API with the stand-in backend: answers, headers, readiness, metrics, /model."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import numpy as np
import pytest

from classifier.errors import PAYLOAD_TOO_LARGE
from classifier.main import create_app
from classifier.schemas import MAX_URL_LENGTH
from tests.classifier.fake_backend import FakeBackend, RecordingLoader
from tests.classifier.helpers import AppFactory, jpeg_bytes, make_settings, parse_server_timing, serve
from tests.classifier.image_server import image_server

pytestmark = pytest.mark.asyncio

EXPECTED_METRICS = [
    "classifier_requests_total",
    "classifier_request_duration_seconds",
    "classifier_worker_requests_total",
    "classifier_stage_duration_seconds",
    "classifier_batch_size",
    "classifier_queue_depth",
    "classifier_inflight_requests",
    "classifier_ready_workers",
    "classifier_model_info",
]


def upload(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> dict[str, object]:
    return {"files": {"file": (name, data, content_type)}}


async def test_predict_upload_answers_the_contract(client: httpx.AsyncClient, backend: FakeBackend) -> None:
    image = jpeg_bytes((220, 30, 30))
    response = await client.post("/predict", **upload(image))
    assert response.status_code == 200, response.text
    body = response.json()

    assert set(body) >= {"predicted_label", "probability", "top_k"}
    assert len(body["top_k"]) == 5
    assert body["top_k"][0] == {"label": body["predicted_label"], "probability": body["probability"]}
    probabilities = [entry["probability"] for entry in body["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert body["predicted_label"] in backend.labels
    assert response.headers["x-served-by"]

    # The answer is the stand-in's own answer for the decoded image (no off-by-one in labels or ordering).
    from classifier.preprocess import decode_image

    expected = FakeBackend().predict(decode_image(image, backend.input_size)[np.newaxis])[0]
    assert body["predicted_label"] == backend.labels[int(np.argmax(expected))]
    assert body["probability"] == pytest.approx(float(expected.max()))


async def test_raw_image_body_is_accepted(client: httpx.AsyncClient) -> None:
    image = jpeg_bytes()
    raw = await client.post("/predict", content=image, headers={"content-type": "image/jpeg"})
    multipart = await client.post("/predict", **upload(image))
    assert raw.status_code == 200, raw.text
    assert raw.json()["top_k"] == multipart.json()["top_k"]


async def test_server_timing_header(app_factory: AppFactory) -> None:
    async with serve(app_factory(FakeBackend(delay_s=0.03))) as client:
        response = await client.post("/predict", **upload(jpeg_bytes()))
    timing = parse_server_timing(response.headers["server-timing"])
    assert list(timing) == ["queue", "decode", "infer", "total"]
    assert timing["infer"] >= 30.0  # the stand-in sleeps 30 ms per call
    assert timing["decode"] > 0.0
    assert timing["total"] >= timing["queue"] + timing["decode"] + timing["infer"] - 0.05


async def test_top_k_follows_the_setting(app_factory: AppFactory) -> None:
    async with serve(app_factory(top_k=3)) as client:
        response = await client.post("/predict", **upload(jpeg_bytes()))
    assert len(response.json()["top_k"]) == 3
    async with serve(app_factory(top_k=50)) as client:  # more than there are labels
        response = await client.post("/predict", **upload(jpeg_bytes()))
    assert len(response.json()["top_k"]) == 10


async def test_predict_from_url(app_factory: AppFactory) -> None:
    image = jpeg_bytes((20, 200, 20))
    with image_server(image) as server:
        async with serve(app_factory(url_allowlist=["127.0.0.1"])) as client:
            by_url = await client.post("/predict/tf", json={"img_url": server.url("/image.jpg")})
            by_url_slash = await client.post("/predict/tf/", json={"img_url": server.url("/image.jpg")})
            by_upload = await client.post("/predict", **upload(image))
    assert by_url.status_code == 200, by_url.text
    assert by_url_slash.status_code == 200, by_url_slash.text
    assert by_url.json()["top_k"] == by_upload.json()["top_k"] == by_url_slash.json()["top_k"]
    timing = parse_server_timing(by_url.headers["server-timing"])
    assert set(timing) == {"queue", "decode", "infer", "fetch", "total"}
    assert by_url.headers["x-served-by"]


async def test_concurrent_requests_share_batches_with_identical_answers(app_factory: AppFactory) -> None:
    colours = [(i * 20 % 256, 255 - i * 15 % 256, i * 7 % 256) for i in range(16)]
    images = [jpeg_bytes(colour) for colour in colours]

    async def answers(backend: FakeBackend, **settings: object) -> list[dict[str, object]]:
        async with serve(app_factory(backend, **settings)) as client:
            responses = await asyncio.gather(*(client.post("/predict", **upload(image)) for image in images))
        assert all(r.status_code == 200 for r in responses)
        return [r.json() for r in responses]

    batched_backend = FakeBackend(delay_s=0.02)
    batched = await answers(batched_backend, max_batch_size=8, max_batch_delay_ms=20.0)
    unbatched = await answers(FakeBackend(), max_batch_size=1)

    assert max(b["batch_size"] for b in batched) > 1  # type: ignore[type-var]
    assert max(batched_backend.batch_sizes) <= 8
    for a, b in zip(batched, unbatched, strict=True):
        assert a["top_k"] == b["top_k"]


async def test_model_runs_on_one_thread_and_never_blocks_the_event_loop(app_factory: AppFactory) -> None:
    backend = FakeBackend(delay_s=1.0)
    loader = RecordingLoader(backend)
    app = create_app(make_settings(), backend_loader=loader)
    async with serve(app) as client:
        slow = asyncio.create_task(client.post("/predict", **upload(jpeg_bytes())))
        await asyncio.sleep(0.1)  # the model call is now sleeping in its thread
        started = time.perf_counter()
        health = await client.get("/healthz")
        # Far below the model's 1 s: the event loop kept serving while the model worked.
        assert time.perf_counter() - started < 0.5
        assert health.status_code == 200
        assert not slow.done()
        assert (await slow).status_code == 200
    assert all(name.startswith("infer") for name in backend.threads)
    assert str(loader.calls[0]["thread"]).startswith("infer")
    assert backend.overlapping_calls == 0


@pytest.mark.parametrize(("max_batch_size", "decoded_on"), [(1, "infer"), (4, "decode")])
async def test_batching_off_decodes_on_the_inference_thread_in_one_hand_off(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, max_batch_size: int, decoded_on: str
) -> None:
    import threading

    import classifier.predictor as predictor_module

    real_decode = predictor_module.decode_image
    threads: list[str] = []

    def recording_decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return real_decode(data, size)

    monkeypatch.setattr(predictor_module, "decode_image", recording_decode)
    backend = FakeBackend()
    async with serve(app_factory(backend, max_batch_size=max_batch_size)) as client:
        ok = await client.post("/predict", **upload(jpeg_bytes()))
        bad = await client.post("/predict", **upload(b"not an image at all"))
        metrics = (await client.get("/metrics")).text
    assert ok.status_code == 200
    assert set(parse_server_timing(ok.headers["server-timing"])) == {"queue", "decode", "infer", "total"}
    # A bad image is still the client's fault (4xx), wherever it was decoded.
    assert bad.status_code == 422 and bad.json()["error"] == "not_an_image"
    # The request's decode (not the warm-up's) ran where this mode puts it; the model only on its thread.
    assert threads[-1].startswith(decoded_on)
    assert all(name.startswith("infer") for name in backend.threads)
    assert re.search(r'classifier_stage_duration_seconds_count\{stage="decode"\} 1\.0', metrics)
    assert re.search(r"classifier_batch_size_count 1\.0", metrics)


async def test_lifespan_loads_with_the_settings_and_warms_up(app_factory: AppFactory) -> None:
    backend = FakeBackend()
    loader = RecordingLoader(backend)
    settings = make_settings(
        backend="tf", model_dir="/models/mnv2", threads=3, inter_op_threads=2, max_batch_size=4
    )
    app = create_app(settings, backend_loader=loader)
    async with serve(app) as client:
        assert (await client.get("/readyz")).status_code == 200
    assert loader.calls == [
        {
            "kind": "tf",
            "model_path": "/models/mnv2/saved_model",
            "labels_path": "/models/mnv2/labels.txt",
            "threads": 3,
            "inter_op_threads": 2,
            "thread": loader.calls[0]["thread"],
        }
    ]
    # Warm-up ran the model at batch 1 and at the largest batch before the first request.
    assert {1, 4} <= set(backend.batch_sizes)


async def test_not_ready_until_the_lifespan_has_run(app_factory: AppFactory) -> None:
    app = app_factory()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://classifier"
    ) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"] == "not_ready"
        predict = await client.post("/predict", **upload(jpeg_bytes()))
        assert predict.status_code == 503
        assert (await client.get("/model")).status_code == 503


async def test_a_model_that_fails_to_load_goes_to_on_load_error() -> None:
    """The lifespan loads in the background; a load that fails is handed to `on_load_error` (by default the
    worker exits with gunicorn's boot-error code: test_gunicorn), and the app stays not ready."""

    def broken_loader(*args: object, **kwargs: object) -> FakeBackend:
        raise FileNotFoundError("no model at /nonexistent/model/model.tflite")

    errors: list[BaseException] = []
    app = create_app(make_settings(), backend_loader=broken_loader, on_load_error=errors.append)
    async with app.router.lifespan_context(app):
        with pytest.raises(FileNotFoundError):
            await app.state.runtime.loading
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://classifier") as client:
            assert (await client.get("/readyz")).status_code == 503
    assert [type(e) for e in errors] == [FileNotFoundError]


async def test_requests_while_the_model_loads_get_503_at_once(backend: FakeBackend) -> None:
    """A restarted replica answers while its model loads, so nginx can send a request on to another replica
    at once instead of the request waiting in the listen backlog until the model is ready."""
    release = threading.Event()

    def slow_loader(*args: object, **kwargs: object) -> FakeBackend:
        release.wait(10)
        return backend

    app = create_app(make_settings(), backend_loader=slow_loader)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://classifier") as client:
            started = time.perf_counter()
            predict = await client.post("/predict", **upload(jpeg_bytes()))
            ready = await client.get("/readyz")
            assert time.perf_counter() - started < 1.0
            assert (predict.status_code, predict.json()["error"]) == (503, "not_ready")
            assert ready.status_code == 503
            release.set()
            await app.state.runtime.loading
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.post("/predict", **upload(jpeg_bytes()))).status_code == 200


async def test_a_model_failure_is_a_500_and_the_service_stays_ready(app_factory: AppFactory) -> None:
    backend = FakeBackend(fail_if=lambda batch: bool((batch > 250).all(axis=(1, 2, 3)).any()))
    async with serve(app_factory(backend)) as client:
        failed = await client.post("/predict", **upload(jpeg_bytes((255, 255, 255))))
        assert failed.status_code == 500
        assert failed.json()["error"] == "internal"
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/predict", **upload(jpeg_bytes()))).status_code == 200


async def test_requests_during_shutdown_get_503(app_factory: AppFactory) -> None:
    app = app_factory()
    async with serve(app) as client:
        await app.state.runtime.predictor.close()  # what the lifespan does on shutdown
        response = await client.post("/predict", **upload(jpeg_bytes()))
    # A 503 (not a 500) lets nginx retry the request on another replica.
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"


async def test_model_endpoint(app_factory: AppFactory) -> None:
    async with serve(
        app_factory(max_batch_size=4, max_batch_delay_ms=3.5, threads=2, decode_threads=3)
    ) as client:
        info = (await client.get("/model")).json()
    assert info["backend"] == "fake"
    assert info["input_size"] == [32, 32]
    assert info["label_count"] == 10
    assert info["batching"] == {"enabled": True, "max_batch_size": 4, "max_batch_delay_ms": 3.5}
    assert info["threads"] == {"intra_op": 2, "inter_op": 1, "decode": 3}
    assert isinstance(info["pid"], int)
    assert info["model_path"].endswith("model.tflite")
    assert info["backend_info"]["num_classes"] == 10


async def test_metrics_endpoint(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.post("/predict", **upload(jpeg_bytes()))).status_code == 200
    await client.post("/predict", content=b"nope", headers={"content-type": "image/jpeg"})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in EXPECTED_METRICS:
        assert name in text, name
    assert 'classifier_requests_total{endpoint="/predict",method="POST",status="200"} 3.0' in text
    assert 'classifier_requests_total{endpoint="/predict",method="POST",status="422"} 1.0' in text
    assert "classifier_batch_size_count 3.0" in text
    assert 'classifier_stage_duration_seconds_count{stage="infer"} 3.0' in text
    assert "classifier_ready_workers 1.0" in text
    assert 'backend="fake"' in text


async def test_unknown_paths_share_one_metrics_label(client: httpx.AsyncClient) -> None:
    for path in ("/a", "/b/c", "/wp-admin.php"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    text = (await client.get("/metrics")).text
    assert 'classifier_requests_total{endpoint="other",method="GET",status="404"} 3.0' in text
    assert "wp-admin" not in text


async def test_index_names_the_service_and_links_its_pages(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["service"] == "mlserve-loadlab classifier"
    assert body["ready"] is True and body["backend"] == "litert"
    assert body["model"].endswith("model.tflite")
    assert body["links"] == {
        "docs": "/docs",
        "openapi": "/openapi.json",
        "model": "/model",
        "predict": "/predict",
        "predict_tf": "/predict/tf",
    }
    for path in body["links"].values():
        assert (await client.get(path)).status_code != 404, path


async def test_index_answers_while_the_model_loads(app_factory: AppFactory) -> None:
    transport = httpx.ASGITransport(app=app_factory())
    async with httpx.AsyncClient(transport=transport, base_url="http://classifier") as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.json()["ready"] is False and response.json()["model"] is None


async def test_predictions_carry_the_tutorials_status_code(app_factory: AppFactory) -> None:
    image = jpeg_bytes()
    with image_server(image) as server:
        async with serve(app_factory(url_allowlist=["127.0.0.1"])) as client:
            # The tutorial's client: trailing slash, JSON body, Accept header.
            by_url = await client.post(
                "/predict/tf/",
                json={"img_url": server.url("/image.jpg")},
                headers={"Accept": "application/json"},
            )
            by_upload = await client.post("/predict", **upload(image))
    for response in (by_url, by_upload):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status_code"] == 200
        assert {"predicted_label", "probability", "top_k", "backend", "batch_size"} <= set(body)


async def test_the_multipart_allowance_is_the_setting(app_factory: AppFactory) -> None:
    # A body over max_upload_bytes + multipart_overhead_bytes is refused from its Content-Length alone.
    async with serve(app_factory(max_upload_bytes=1000, multipart_overhead_bytes=500)) as client:
        refused = await client.post("/predict", **upload(b"\xff" * 1600))
        # Under the body limit but over the image limit: the same code, from the image check.
        image_over = await client.post("/predict", **upload(b"\xff" * 1200))
    assert refused.status_code == 413
    assert refused.json()["error"] == PAYLOAD_TOO_LARGE and "1500 bytes" in refused.json()["detail"]
    assert image_over.status_code == 413
    assert image_over.json()["error"] == PAYLOAD_TOO_LARGE and "1000 bytes" in image_over.json()["detail"]


async def test_the_schema_states_what_the_code_enforces(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]

    img_url = paths["/predict/tf"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    img_url = img_url["properties"]["img_url"]
    assert img_url["format"] == "uri" and img_url["maxLength"] == MAX_URL_LENGTH
    assert re.match(img_url["pattern"], "HTTPS://nginx/a.jpg") and not re.match(img_url["pattern"], "ftp://x")
    too_long = await client.post("/predict/tf", json={"img_url": "http://nginx/" + "a" * MAX_URL_LENGTH})
    assert too_long.status_code == 422

    upload_body = paths["/predict"]["post"]["requestBody"]["content"]
    assert upload_body["multipart/form-data"]["schema"]["properties"]["file"]["minLength"] == 1
    assert upload_body["multipart/form-data"]["encoding"]["file"]["contentType"] == "image/*"
    assert set(upload_body) == {"multipart/form-data", "image/*", "application/octet-stream"}

    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert set(paths["/predict"]["post"]["responses"]) == {"200", "400", "413", "415", "422", "503"}
    assert set(paths["/predict/tf"]["post"]["responses"]) == {"200", "400", "403", "413", "415", "422", "503"}
    for path in ("/predict", "/predict/tf"):
        for status, answer in paths[path]["post"]["responses"].items():
            ref = answer["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/Prediction" if status == "200" else "/ErrorBody"), (path, status)
    prediction = schema["components"]["schemas"]["Prediction"]["properties"]
    assert (
        prediction["status_code"]["const"] == 200 and "tutorial" in prediction["status_code"]["description"]
    )
