"""Where one request's CPU goes inside the classifier worker: per thread and per stage, at one concurrency.

Starts the service like `python3 -m bench` does (gunicorn, 1 worker, 1 inference thread, batching off, pinned
to the server core), drives it with bench/loadgen.py from the other core, and meanwhile
- reads every worker thread's CPU time (/proc, via psutil) and context switches over the measured window;
- samples the worker with py-spy (`record --format raw --threads --nonblocking`, pinned to the client core)
  and splits each thread's CPU over stages by the share of its samples whose stack is in that stage.
py-spy counts a thread only while it is runnable, so GIL waits (a futex sleep) are not in any stage; a
thread that is runnable but waits for the one core is, which is why CPU comes from /proc and only the
split within a thread from the samples.

    python3 -m bench.profile [--backend litert] [--levels 1,4] [--seconds 6] [IMAGE ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil

from bench import loadgen, models, servers

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = [REPO / "images" / "chelsea_640x480.jpg", REPO / "images" / "rocket_1920x1080.jpg"]

# Stage of a sample: the first rule (in this order) that matches any frame of its stack. Specific work
# first, so that e.g. a metrics call made from the middleware counts as metrics, not as middleware.
STAGE_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("infer (backend.predict)", ("litert.py", "tf_savedmodel.py")),
    ("infer: stack + checks", ("_predict_batch",)),
    ("decode (decode_image)", ("decode_image",)),
    ("metrics (prometheus-client)", ("prometheus_client",)),
    (
        "multipart parse",
        ("formparsers", "python_multipart", "_read_multipart", "UploadFile", "datastructures.py"),
    ),
    (
        "JSON answer",
        ("JSONResponse", "json/encoder", "json/__init__", "orjson", "Predictor.answer", "render ("),
    ),
    ("Timings / Server-Timing", ("timing.py",)),
    ("batcher + asyncio queue", ("batching.py",)),
    (
        "executor hand-off",
        (
            "run_in_executor",
            "call_soon_threadsafe",
            "concurrent/futures",
            "_chain_future",
            "_copy_future_state",
            "_set_state",
            "futures.py",
            "thread.py",
        ),
    ),
    ("app + framework (routing, middleware)", ("fastapi", "starlette", "classifier/")),
    ("uvicorn HTTP (httptools)", ("uvicorn", "httptools")),
    ("event loop (uvloop/asyncio)", ("uvloop", "asyncio", "events.py", "base_events", "selector")),
]


def stage_of(stack: str) -> str:
    for stage, needles in STAGE_RULES:
        if any(needle in stack for needle in needles):
            return stage
    return "other"


def parse_raw(path: Path) -> dict[int, tuple[str, Counter[str]]]:
    """py-spy raw output -> {tid: (thread name, Counter(stage -> samples))}."""
    threads: dict[int, tuple[str, Counter[str]]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("thread (") or not count.isdigit():
            continue
        head, _, frames = stack.partition(";")
        tid_text, _, name = head[len("thread (") :].partition("):")
        tid = int(tid_text, 0)
        entry = threads.setdefault(tid, (name.strip(), Counter()))
        entry[1][stage_of(frames)] += int(count)
    return threads


def thread_times(pid: int) -> dict[int, tuple[float, float, int, int]]:
    """{tid: (cpu seconds, of which in the kernel, voluntary, involuntary context switches)} of one
    process's threads. The kernel share is where socket work shows (receiving an upload over TCP)."""
    found: dict[int, tuple[float, float, int, int]] = {}
    for thread in psutil.Process(pid).threads():
        voluntary = involuntary = 0
        try:
            status = Path(f"/proc/{pid}/task/{thread.id}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                voluntary = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                involuntary = int(line.split()[1])
        found[thread.id] = (thread.user_time + thread.system_time, thread.system_time, voluntary, involuntary)
    return found


def role(name: str) -> str:
    if name.startswith("infer"):
        return "inference thread"
    if name.startswith("decode"):
        return "decode threads"
    if name == "MainThread":
        return "event loop thread"
    return "other threads"


def profile_level(
    url: str,
    worker: int,
    image: Path,
    level: int,
    seconds: float,
    warmup: float,
    client_cpu: str,
    workdir: Path,
    native: bool = False,
) -> dict[str, Any]:
    raw = workdir / f"pyspy-{image.stem}-c{level}.txt"
    generator = subprocess.Popen(
        servers.pinned(client_cpu, loadgen.command(url, image, level, seconds, warmup)),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(warmup + 0.3)
    before = thread_times(worker)
    wall0 = time.perf_counter()
    spy = subprocess.Popen(
        servers.pinned(
            client_cpu,
            [
                "py-spy",
                "record",
                "--pid",
                str(worker),
                "--format",
                "raw",
                "--threads",
                *(["--native"] if native else ["--nonblocking"]),
                "--rate",
                "250",
                "--duration",
                str(int(seconds - 0.5)),
                "--output",
                str(raw),
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = generator.communicate(timeout=seconds + warmup + 60)
    after = thread_times(worker)
    wall = time.perf_counter() - wall0
    spy.wait(timeout=30)
    if generator.returncode != 0:
        raise RuntimeError(stderr.decode(errors="replace"))
    point = json.loads(stdout)
    requests = point["rps"] * wall
    samples = parse_raw(raw) if raw.is_file() else {}
    names = {tid: entry[0] for tid, entry in samples.items()}
    per_role: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    switches: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    kernel: dict[str, float] = defaultdict(float)
    for tid, (cpu1, sys1, vol1, invol1) in after.items():
        cpu0, sys0, vol0, invol0 = before.get(tid, (0.0, 0.0, 0, 0))
        name = names.get(tid, "")
        who = role(name) if name else ("event loop thread" if tid == worker else "other threads")
        cpu_ms = (cpu1 - cpu0) * 1000.0 / requests
        kernel[who] += (sys1 - sys0) * 1000.0 / requests
        switches[who][0] += (vol1 - vol0) / requests
        switches[who][1] += (invol1 - invol0) / requests
        counts = samples.get(tid, ("", Counter()))[1]
        total = sum(counts.values())
        if not total:
            per_role[who]["(no samples)"] += cpu_ms
            continue
        for stage, count in counts.items():
            per_role[who][stage] += cpu_ms * count / total
    return {
        "image": image.name,
        "concurrency": level,
        "rps": point["rps"],
        "requests": round(requests),
        "p50_ms": point["latency_ms"]["p50"],
        "server_timing_ms": {k: v["mean"] for k, v in point["server_timing_ms"].items()},
        "cpu_ms_per_request": {who: dict(stages) for who, stages in per_role.items()},
        "kernel_cpu_ms_per_request": dict(kernel),
        "context_switches_per_request": {
            who: {"voluntary": v, "involuntary": i} for who, (v, i) in switches.items()
        },
        "pyspy_stderr": spy.stderr.read().decode(errors="replace")[-500:] if spy.stderr else "",
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['image']} c={result['concurrency']}: {result['rps']:.1f} RPS, "
        f"p50 {result['p50_ms']:.1f} ms, Server-Timing means "
        + ", ".join(f"{k} {v:.2f}" for k, v in result["server_timing_ms"].items())
    ]
    grand = 0.0
    for who, stages in sorted(result["cpu_ms_per_request"].items()):
        subtotal = sum(stages.values())
        grand += subtotal
        sw = result["context_switches_per_request"].get(who, {})
        kernel = result["kernel_cpu_ms_per_request"]
        lines.append(
            f"  {who}: {subtotal:.2f} ms/request, {kernel.get(who, 0.0):.2f} of it "
            f"in the kernel (switches/request: voluntary {sw.get('voluntary', 0):.1f}, "
            f"involuntary {sw.get('involuntary', 0):.1f})"
        )
        for stage, ms in sorted(stages.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {stage:<40} {ms:6.3f} ms")
    lines.append(f"  worker total: {grand:.2f} ms of CPU per request")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--backend", default="litert", choices=("litert", "litert-int8", "tf"))
    parser.add_argument("--levels", default="1,4")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--server-cpu", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--cache", type=Path, default=models.DEFAULT_CACHE, help="where the model is built")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--native", action="store_true", help="py-spy --native: C frames too (slower)")
    parser.add_argument("--raw-dir", type=Path, help="keep py-spy's raw stacks (one file per level) here")
    args = parser.parse_args(argv)
    model_dir = models.ensure_model_dir(args.cache)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        port = servers.free_port()
        server = servers.start_classifier(
            model_dir,
            backend=args.backend,
            port=port,
            cpus=args.server_cpu,
            max_batch_size=1,
            max_batch_delay_ms=0.0,
            threads=1,
            workdir=workdir,
            tag=f"profile-{args.backend}",
        )
        try:
            worker = psutil.Process(server.pid).children()[0].pid
            for image in args.images:
                for level in (int(v) for v in args.levels.split(",")):
                    result = profile_level(
                        f"http://127.0.0.1:{port}/predict",
                        worker,
                        image,
                        level,
                        args.seconds,
                        args.warmup,
                        args.client_cpu,
                        workdir,
                        args.native,
                    )
                    result["backend"] = args.backend
                    if args.raw_dir:
                        args.raw_dir.mkdir(parents=True, exist_ok=True)
                        name = f"pyspy-{args.backend}-{image.stem}-c{level}.txt"
                        shutil.copy(workdir / f"pyspy-{image.stem}-c{level}.txt", args.raw_dir / name)
                    results.append(result)
                    print(render(result), flush=True)
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
