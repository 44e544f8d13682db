"""The tutorial's request pattern, for pointing its users' existing load test at the lab.

What the tutorial's own Locust client (`locust_test.py`) does: `GET /` with weight 1, and `POST /predict/tf/`
with weight 3 (trailing slash, JSON `{"img_url": ...}`, `Accept: application/json`), counting a prediction
as failed unless its body has `predicted_label`, `probability` and `status_code` 200. A FastHttpUser here,
like the lab's own locustfile; the wait time is ours. Through the lab's nginx:

    locust -f locust/tutorial_client.py --headless -H http://localhost:8000 -u 4 -r 4 -t 30s

The classifier fetches `--img-url` itself, so its host must be in CLASSIFIER_URL_ALLOWLIST (by default the
lab's nginx, which serves images/).
"""

from __future__ import annotations

from typing import Any

from locust import FastHttpUser, between, events, task

PREDICTION_FIELDS = ("predicted_label", "probability", "status_code")


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    parser.add_argument(
        "--img-url",
        default="http://nginx/images/chelsea_640x480.jpg",
        env_var="LOCUST_TUTORIAL_IMG_URL",
        help="The img_url every prediction sends; the classifier fetches it from inside the lab.",
    )


class TutorialUser(FastHttpUser):
    wait_time = between(0.5, 1.0)

    @task(1)
    def index(self) -> None:
        self.client.get("/")

    @task(3)
    def predict(self) -> None:
        with self.client.post(
            "/predict/tf/",
            json={"img_url": self.environment.parsed_options.img_url},
            headers={"Accept": "application/json"},
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                body = response.json()
            except ValueError:
                response.failure("the answer is not JSON")
                return
            missing = [name for name in PREDICTION_FIELDS if name not in body]
            if missing:
                response.failure(f"the answer lacks {', '.join(missing)}")
            elif body["status_code"] != 200:
                response.failure(f"status_code in the body is {body['status_code']!r}, not 200")
