"""A closed-loop HTTP load generator: N keep-alive connections, each posting the same JPEG to /predict and
sending the next request as soon as the answer is in.

Raw HTTP/1.1 over asyncio streams (uvloop when installed), with the request bytes built once, so the client
spends little CPU per request and stays far from saturating its own core; it measures and reports its CPU
share so that the report can prove it. Requests completed during the warm-up are not counted; latency
samples are the requests that complete inside the measured window, throughput is their count over its length.

    python3 -m bench.loadgen --url http://127.0.0.1:8000/predict --image images/chelsea_640x480.jpg \
        --concurrency 8 --duration 10 --warmup 2          (prints one JSON object)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import cpu_share, summarize_ms

SERVER_TIMING = re.compile(rb"([a-z]+);dur=([0-9.]+)")
BATCH_SIZE = re.compile(rb'"batch_size":\s*(\d+)')
CONNECT_TIMEOUT_S = 5.0
# Longer than any healthy answer at 16 concurrent requests, short enough to end a run stuck on a dead server.
REQUEST_TIMEOUT_S = 60.0
MAX_ERROR_SAMPLES = 5


def multipart_request(host: str, port: int, path: str, image: bytes, filename: str) -> bytes:
    """One complete keep-alive POST with the image as the multipart field `file`."""
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + image + f"\r\n--{boundary}--\r\n".encode()
    headers = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "User-Agent: bench-loadgen\r\n"
        "Connection: keep-alive\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return headers + body


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent by the servers measured here
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.read()
    return Response(status, headers, body)


@dataclass
class Recorder:
    measure_start: float
    measure_end: float
    latencies: list[float] = field(default_factory=list)
    server_timing: dict[str, list[float]] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    warmup_requests: int = 0

    def in_window(self, finished: float) -> bool:
        return self.measure_start <= finished <= self.measure_end

    def ok(self, started: float, finished: float, response: Response) -> None:
        if not self.in_window(finished):
            self.warmup_requests += finished < self.measure_start
            return
        self.latencies.append(finished - started)
        timing = response.headers.get(b"server-timing")
        if timing:
            for name, value in SERVER_TIMING.findall(timing):
                self.server_timing.setdefault(name.decode(), []).append(float(value) / 1000.0)
        match = BATCH_SIZE.search(response.body)
        if match:
            self.batch_sizes.append(int(match.group(1)))

    def error(self, finished: float, what: str) -> None:
        if not self.in_window(finished):
            return
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(what)


async def _connection(
    host: str, port: int, request: bytes, recorder: Recorder, stop_at: float, expect: bytes
) -> None:
    clock = time.perf_counter
    reader = writer = None
    while clock() < stop_at:
        started = clock()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                )
            assert reader is not None
            writer.write(request)
            response = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT_S)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
        ) as exc:
            recorder.error(clock(), f"{type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)  # a refused connection must not spin the generator's core
            continue
        finished = clock()
        if response.status == 200 and expect in response.body:
            recorder.ok(started, finished, response)
        else:
            recorder.error(finished, f"HTTP {response.status}: {response.body[:200]!r}")
        if response.headers.get(b"connection", b"").lower() == b"close":
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def closed_loop(
    url: str,
    image: bytes,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    filename: str = "image.jpg",
    expect: bytes = b"predicted_label",
) -> dict[str, object]:
    """Run the load and return the measured window's summary (JSON-ready)."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    request = multipart_request(host, port, parsed.path or "/", image, filename)
    now = time.perf_counter()
    recorder = Recorder(measure_start=now + warmup_s, measure_end=now + warmup_s + duration_s)

    async def measure_cpu() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, recorder.measure_start - time.perf_counter()))
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        cpu0 = usage.ru_utime + usage.ru_stime
        await asyncio.sleep(max(0.0, recorder.measure_end - time.perf_counter()))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime - cpu0, time.perf_counter() - wall

    cpu_task = asyncio.create_task(measure_cpu())
    await asyncio.gather(
        *(
            _connection(host, port, request, recorder, recorder.measure_end, expect)
            for _ in range(concurrency)
        )
    )
    cpu_s, wall_s = await cpu_task
    completed = len(recorder.latencies)
    return {
        "url": url,
        "concurrency": concurrency,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "request_bytes": len(request),
        "requests": completed,
        "errors": recorder.errors,
        "error_samples": recorder.error_samples,
        "warmup_requests": recorder.warmup_requests,
        "rps": completed / duration_s,
        "latency_ms": summarize_ms(recorder.latencies),
        "server_timing_ms": {name: summarize_ms(v) for name, v in sorted(recorder.server_timing.items())},
        "mean_batch_size": (
            sum(recorder.batch_sizes) / len(recorder.batch_sizes) if recorder.batch_sizes else None
        ),
        "generator_cpu_percent": cpu_share(cpu_s, wall_s),
    }


def run(url: str, image: bytes, **kwargs: object) -> dict[str, object]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(closed_loop(url, image, **kwargs))  # type: ignore[arg-type]
    return uvloop.run(closed_loop(url, image, **kwargs))  # type: ignore[arg-type]


def command(url: str, image: Path, concurrency: int, duration_s: float, warmup_s: float) -> list[str]:
    """The command line that runs this generator in its own process (to pin it to its own core)."""
    return [
        sys.executable, "-m", "bench.loadgen", "--url", url, "--image", str(image),
        "--concurrency", str(concurrency), "--duration", str(duration_s), "--warmup", str(warmup_s),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000/predict")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds run before measuring")
    args = parser.parse_args(argv)
    result = run(
        args.url,
        args.image.read_bytes(),
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        filename=args.image.name,
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
