"""What a worker holds once its model is loaded (`Runtime`), and the one way a request's image becomes an
answer (`classify`): both entrances of `POST /predict` (middleware.UploadFastPath and the route) and
`POST /predict/tf` call it, so readiness, the Server-Timing stages and the answer's shape are decided here
once, and every failure is an ApiError answered by `ApiError.response()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi.responses import JSONResponse

from classifier.errors import ApiError
from classifier.fetch import ImageFetcher
from classifier.metrics import Metrics
from classifier.predictor import Predictor
from classifier.settings import Settings
from classifier.timing import Timings, server_timing

ImageReader = Callable[[ImageFetcher, Timings], Awaitable[bytes]]
"""Reads the request's image (an upload's bytes, or the URL's image via the fetcher); raises ApiError."""


@dataclass
class Runtime:
    """What the endpoints need, filled in by the lifespan once the model is loaded and warmed."""

    settings: Settings
    metrics: Metrics
    hostname: str
    predictor: Predictor | None = None
    fetcher: ImageFetcher | None = None
    model_name: str = ""
    """Where the model came from (manifest.json's `source` when the image build wrote one) or its path."""
    ready: bool = False
    loading: asyncio.Task[None] | None = None  # the lifespan's model load, running while the app answers

    def loaded(self) -> tuple[Predictor, ImageFetcher]:
        """The predictor and the fetcher; ApiError `not_ready` while the model loads or in shutdown."""
        if not self.ready or self.predictor is None or self.fetcher is None:
            raise ApiError("not_ready", "the model is still loading")
        return self.predictor, self.fetcher


async def classify(runtime: Runtime, read: ImageReader) -> JSONResponse:
    """Readiness, then the image (`read`), decode + infer, and the answer with its Server-Timing header.

    Readiness comes first, so a worker that is not ready answers 503 whatever the body holds (nginx then
    retries another replica). `total` counts from here: the route's body read and multipart parse are in it.
    """
    timings = Timings()
    predictor, fetcher = runtime.loaded()
    data = await read(fetcher, timings)
    answer = await predictor.predict(data, timings)
    stages = timings.finish()
    runtime.metrics.observe_stages(stages)
    # `status_code` in the body: the tutorial's clients check it (schemas.Prediction).
    return JSONResponse({**answer, "status_code": 200}, headers={"Server-Timing": server_timing(stages)})
