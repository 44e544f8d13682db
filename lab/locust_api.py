"""A client for a RUNNING Locust 2.47 master's web API (its workers stay connected between runs).

Endpoints, as defined in locust/web.py 2.47: POST /swarm (form: user_count, spawn_rate, host, run_time and
any custom option the locustfile declared), POST /stop, GET /stats/requests (JSON, cached 2 s by the
master), GET /worker-count, GET /stats/requests/csv, GET /stats/failures/csv,
GET /stats/requests_full_history/csv (404 unless the master runs with --csv and --csv-full-history),
GET /stats/report?download=1. The locustfile adds GET /served-by, GET /server-timing and GET /arrivals.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx

# Workers send their stats to the master every 3 s (locust.runners.WORKER_REPORT_INTERVAL), also after a
# stop, but never a final report on "stop": wait this long before reading totals.
WORKER_REPORT_INTERVAL_S = 3.0
FLUSH_WAIT_S = WORKER_REPORT_INTERVAL_S + 0.7


class LocustError(RuntimeError):
    pass


def format_option(value: float | int | str) -> str:
    """Form value for a custom option. Locust converts a form value with type(default)(value), so an
    integral number is sent without a decimal point: it then parses as an int or a float option."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class LocustAPI:
    def __init__(self, url: str, timeout_s: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str) -> httpx.Response:
        try:
            return self._client.get(path)
        except httpx.HTTPError as err:
            raise LocustError(f"GET {self.url}{path}: {err}") from err

    def stats(self) -> dict[str, Any]:
        response = self._get("/stats/requests")
        response.raise_for_status()
        return dict(response.json())

    def worker_count(self) -> int:
        response = self._get("/worker-count")
        response.raise_for_status()
        return int(response.json()["worker_count"])

    def wait_workers(self, expected: int | None, timeout_s: float = 90.0) -> int:
        """Wait until `expected` workers (at least one when None) are connected and ready."""
        deadline = time.monotonic() + timeout_s
        count = 0
        last_error = ""
        while time.monotonic() < deadline:
            try:
                count = self.worker_count()
                if (expected is None and count >= 1) or (expected is not None and count >= expected):
                    return count
            except (LocustError, httpx.HTTPError) as err:
                last_error = str(err)
            time.sleep(0.5)
        want = expected if expected is not None else "at least 1"
        raise LocustError(f"{want} Locust worker(s) expected at {self.url}, {count} connected. {last_error}")

    def swarm(
        self,
        users: int,
        spawn_rate: float,
        host: str | None = None,
        run_time_s: float | None = None,
        options: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        form: dict[str, str] = {"user_count": str(users), "spawn_rate": format_option(float(spawn_rate))}
        if host:
            form["host"] = host
        if run_time_s is not None:
            # A safety net: if `lab` dies, the master still stops the test by itself.
            form["run_time"] = f"{math.ceil(run_time_s)}s"
        form.update(options or {})
        try:
            response = self._client.post("/swarm", data=form)
        except httpx.HTTPError as err:
            raise LocustError(f"POST {self.url}/swarm: {err}") from err
        if response.status_code != 200:
            raise LocustError(f"POST /swarm answered {response.status_code}: {response.text[:500]}")
        body = dict(response.json())
        if not body.get("success"):
            raise LocustError(f"POST /swarm refused: {body.get('message')}")
        return body

    def stop(self) -> None:
        # The master answers once every worker reported its users stopped (it waits up to 60 s more).
        try:
            response = self._client.post("/stop", timeout=90.0)
        except httpx.HTTPError as err:
            raise LocustError(f"POST {self.url}/stop: {err}") from err
        if response.status_code != 200:
            raise LocustError(f"POST /stop answered {response.status_code}: {response.text[:300]}")

    def wait_running(self, timeout_s: float = 60.0) -> str:
        """Wait until spawning is complete (state "running"); /stats/requests is cached up to 2 s."""
        started = time.monotonic()
        state = ""
        while time.monotonic() - started < timeout_s:
            state = str(self.stats().get("state", ""))
            if state == "running":
                return state
            # Past the 2 s cache, a test that is still "stopped" or "ready" did not start at all.
            if state in ("stopped", "ready") and time.monotonic() - started > 5.0:
                raise LocustError(f"the test did not start (state {state!r}): see the master's log")
            time.sleep(0.5)
        raise LocustError(f"the test did not reach 'running' within {timeout_s:.0f}s (state {state!r})")

    def download(self, path: str) -> tuple[int, bytes]:
        try:
            response = self._client.get(path, timeout=60.0)
        except httpx.HTTPError as err:
            raise LocustError(f"GET {self.url}{path}: {err}") from err
        return response.status_code, response.content

    def _optional_json(self, path: str) -> dict[str, Any] | None:
        """A route the locustfile adds: None when the master does not have it (404 from an older one)."""
        status, body = self.download(path)
        if status != 200:
            return None
        return dict(json.loads(body))

    def served_by(self) -> dict[str, Any] | None:
        return self._optional_json("/served-by")

    def server_timing(self) -> dict[str, Any] | None:
        return self._optional_json("/server-timing")

    def timeline(self) -> dict[str, Any] | None:
        return self._optional_json("/timeline")

    def arrivals(self) -> dict[str, Any] | None:
        return self._optional_json("/arrivals")

    def started_with(self) -> dict[str, str]:
        """The locustfile's options as the master started with them (GET /options), as form values: {} from
        a master without the route."""
        return {str(k): format_option(v) for k, v in (self._optional_json("/options") or {}).items()}
