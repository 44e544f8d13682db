"""`python3 -m bench`: the classifier measured against its own bare backend and a tutorial-style server.

One run, on the same cores and the same two images (640x480 and 1920x1080 JPEG):
1. bare backend (decode + infer in a loop, no HTTP) on the server core, one thread: TF SavedModel, LiteRT
   float32 (converted from the same SavedModel by fetch_model.py) and the real uint8 fixture when present;
2. the classifier (gunicorn + its gunicorn.conf.py, 1 worker) on the server core, directly and through nginx,
   closed loop at rising concurrency, batching off and on;
3. the tutorial-style baseline (bench/baseline_server.py) on the server core, same load.
The load generator (and nginx) run on the other core. Writes results JSON and a Markdown table.

    python3 -m bench [--quick] [--out bench/results/<timestamp>.json]
    python3 -m bench --report-only bench/results/<file>.json       (Markdown again from a saved run)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import loadgen, models, report, servers
from bench.dns import DNSStub
from bench.stats import cpu_share

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
IMAGES = [REPO / "images" / "chelsea_640x480.jpg", REPO / "images" / "rocket_1920x1080.jpg"]
MAX_UPLOAD = 10 * 1024 * 1024


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (seconds, not minutes)")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/<UTC timestamp>.json)")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "latest.md", help="Markdown table")
    parser.add_argument("--duration", type=float, help="measured seconds per load level (default 8, quick 2)")
    parser.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each level (default 2, quick 1)"
    )
    parser.add_argument("--levels", help="comma-separated concurrency levels (default 1,2,4,8,16; quick 1,4)")
    parser.add_argument("--batch-levels", help="levels also run with batching on (default 8,16; quick 4)")
    parser.add_argument(
        "--keepalive-levels", help="levels run through the keep-alive nginx variant (default 1,8; quick 1)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="CLASSIFIER_MAX_BATCH_SIZE when batching is on"
    )
    parser.add_argument(
        "--batch-delay-ms", type=float, default=5.0, help="CLASSIFIER_MAX_BATCH_DELAY_MS when on"
    )
    parser.add_argument(
        "--bare-seconds", type=float, help="measured seconds per bare loop (default 8, quick 2)"
    )
    parser.add_argument("--server-cpu", default="1", help="core of the servers and the bare loops")
    parser.add_argument("--client-cpu", default="0", help="core of the load generator and nginx")
    parser.add_argument(
        "--max-interference",
        type=float,
        default=report.INTERFERENCE_LIMIT,
        help="%% of the measured core other processes may take before a measurement is repeated",
    )
    parser.add_argument("--retries", type=int, default=2, help="repeats of one disturbed measurement")
    parser.add_argument(
        "--retry-budget", type=int, help="repeats in the whole run (default 12, quick 4), bounds its length"
    )
    parser.add_argument("--cache", type=Path, default=models.DEFAULT_CACHE, help="where the model is built")
    parser.add_argument("--report-only", type=Path, metavar="RESULTS_JSON", help="only render Markdown")
    parser.add_argument(
        "--add-note",
        action="append",
        default=[],
        metavar="TEXT",
        help="with --report-only: record a finding (e.g. from a profile) in the JSON's notes; repeatable",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.levels = _levels(args.levels or ("1,4" if quick else "1,2,4,8,16"))
    args.batch_levels = _levels(args.batch_levels or ("4" if quick else "8,16"))
    args.keepalive_levels = _levels(args.keepalive_levels or ("1" if quick else "1,8"))
    args.bare_seconds = args.bare_seconds or (2.0 if quick else 8.0)
    args.retry_budget = args.retry_budget if args.retry_budget is not None else (4 if quick else 12)
    return args


def _levels(text: str) -> list[int]:
    return sorted({int(v) for v in text.split(",") if v.strip()})


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("tensorflow-cpu", "ai-edge-litert", "fastapi", "uvicorn", "gunicorn", "tf-keras", "pillow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    try:
        nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
        found["nginx"] = nginx.stderr.strip().rsplit("/", 1)[-1]
    except OSError:
        found["nginx"] = "not installed"
    return found


def image_info(path: Path) -> dict[str, Any]:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return {
        "path": str(path.relative_to(REPO)),
        "bytes": path.stat().st_size,
        "width": width,
        "height": height,
    }


# --- 1. bare backends ---


class Retries:
    """Measurements disturbed by other processes (more than `limit` % of the measured core) are taken again,
    up to `per_measurement` times each and `budget` times in the whole run, keeping the least disturbed.

    Before a repeat it waits (at most `max_wait_s`) for the core to be quiet: a neighbour's burst often lasts
    longer than one measurement, and repeating straight into it wastes the budget.
    """

    PROBE_S = 2.0

    def __init__(
        self,
        limit: float,
        per_measurement: int,
        budget: int,
        cpu: str | None = None,
        max_wait_s: float = 60.0,
    ) -> None:
        self.limit = limit
        self.per_measurement = per_measurement
        self.budget = budget
        self.cpu = None if cpu is None else int(cpu)
        self.max_wait_s = max_wait_s
        self.used = 0
        self.waited_s = 0.0

    def again(self, interference: float, attempt: int) -> bool:
        if interference <= self.limit or attempt > self.per_measurement or self.used >= self.budget:
            return False
        self.used += 1
        say(f"  others took {interference:.0f}% of the core: measuring again ({self.used}/{self.budget})")
        self.wait_for_quiet()
        return True

    def wait_for_quiet(self) -> None:
        if self.cpu is None:
            return
        started = time.monotonic()
        while time.monotonic() - started < self.max_wait_s:
            # Between measurements our own server idles: what keeps the core busy is someone else.
            if psutil.cpu_percent(self.PROBE_S, percpu=True)[self.cpu] <= self.limit:
                break
        self.waited_s += time.monotonic() - started


def _interference(measurement: dict[str, Any]) -> float:
    value = measurement.get("interference_percent", 0.0)
    return 0.0 if value is None or math.isnan(value) else float(value)


def run_bare(model_dir: Path, args: argparse.Namespace, retries: Retries) -> list[dict[str, Any]]:
    entries = models.bare_entries(model_dir)
    entries.append(
        ("tutorial", "tutorial", model_dir / "saved_model", "Tutorial-style: PIL decode + Keras predict()")
    )
    results = []
    for label, backend, path, title in entries:
        attempt, entry = 1, bare_once(model_dir, args, backend, path)
        while retries.again(max(_interference(m) for m in entry["images"].values()), attempt):
            attempt += 1
            again = bare_once(model_dir, args, backend, path)
            for name, measured in again["images"].items():
                if _interference(measured) < _interference(entry["images"][name]):
                    entry["images"][name] = measured
        entry.update(label=label, title=title, attempts=attempt)
        results.append(entry)
    return results


def bare_once(model_dir: Path, args: argparse.Namespace, backend: str, path: Path) -> dict[str, Any]:
    say(f"bare {backend} {path.name}: {args.bare_seconds:g} s per image on core {args.server_cpu}")
    argv = [
        sys.executable,
        "-m",
        "bench.bare",
        "--backend",
        backend,
        "--model-path",
        str(path),
        "--labels",
        str(model_dir / "labels.txt"),
        "--seconds",
        str(args.bare_seconds),
        *([] if args.server_cpu is None else ["--cpu", args.server_cpu]),
        *map(str, IMAGES),
    ]
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"bare {backend} {path} failed:\n{done.stderr[-3000:]}")
    entry = json.loads(done.stdout.strip().splitlines()[-1])
    for name, m in entry["images"].items():
        say(
            f"  {name}: {m['img_per_s']:.1f} img/s (cpu {m['cpu_percent']:.0f}%, others on the core "
            f"{m['interference_percent']:.0f}%)"
        )
    return entry


# --- 2./3. over HTTP ---


class Sweep:
    """Runs load levels against one started server and records each as a point."""

    def __init__(self, args: argparse.Namespace, points: list[dict[str, Any]], retries: Retries) -> None:
        self.args = args
        self.points = points
        self.retries = retries

    def run(
        self, url: str, server: servers.Process, extra: servers.Process | None, levels: list[int], **keys: Any
    ) -> None:
        for image in IMAGES:
            for level in levels:
                attempt, point = 1, self.level(url, image, level, server, extra)
                while self.retries.again(_interference(point), attempt):
                    attempt += 1
                    again = self.level(url, image, level, server, extra)
                    if _interference(again) < _interference(point):
                        point = again
                point.update(keys, image=image.name, attempts=attempt)
                self.points.append(point)
                lat = point["latency_ms"]
                say(
                    f"  {keys.get('system')} {keys.get('backend') or ''} {keys.get('path')} "
                    f"batch={keys.get('batch')} {image.name} c={level}: {point['rps']:.1f} RPS, "
                    f"p50/p95/p99 {lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f} ms, "
                    f"errors {point['errors']}, server cpu {point['server_cpu_percent']:.0f}%, "
                    f"others on its core {point.get('interference_percent', math.nan):.0f}%, "
                    f"generator cpu {point['generator_cpu_percent']:.0f}%"
                )

    def level(
        self, url: str, image: Path, level: int, server: servers.Process, extra: servers.Process | None
    ) -> dict[str, Any]:
        args = self.args
        argv = loadgen.command(url, image, level, args.duration, args.warmup)
        generator = subprocess.Popen(
            servers.pinned(args.client_cpu, argv), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # Server-side counters over the measured window only (the generator's start-up and warm-up excluded).
        time.sleep(args.warmup + 0.3)
        wall0 = time.perf_counter()
        psutil.cpu_percent(percpu=True)  # starts this thread's window for the per-core busy shares below
        server0, extra0 = server.cpu_seconds(), extra.cpu_seconds() if extra else 0.0
        stdout, stderr = generator.communicate(timeout=args.duration + args.warmup + 120)
        wall = time.perf_counter() - wall0
        # Idle and iowait are not busy; everything else (steal included: time the hypervisor gave another
        # guest, which our processes could not use) is.
        busy = psutil.cpu_percent(percpu=True)
        if generator.returncode != 0:
            raise RuntimeError(f"load generator failed: {stderr.decode(errors='replace')[-2000:]}")
        point = json.loads(stdout)
        point["server_cpu_percent"] = cpu_share(server.cpu_seconds() - server0, wall)
        if extra is not None:
            point["nginx_cpu_percent"] = cpu_share(extra.cpu_seconds() - extra0, wall)
        point["core_busy_percent"] = {
            role: busy[int(cpu)]
            for role, cpu in (("server", args.server_cpu), ("client", args.client_cpu))
            if cpu is not None and int(cpu) < len(busy)
        }
        if "server" in point["core_busy_percent"]:
            # Other processes (or the hypervisor, as steal) on the server's core: they make RPS lower.
            others = point["core_busy_percent"]["server"] - point["server_cpu_percent"]
            point["interference_percent"] = max(0.0, others)
        if not server.alive():
            raise RuntimeError(f"{server.name} died during the run:\n{server.tail()}")
        return point


def run_http(
    model_dir: Path, args: argparse.Namespace, workdir: Path, retries: Retries
) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    sweep = Sweep(args, points, retries)
    port, nginx_port, keepalive_port = servers.free_port(), servers.free_port(), servers.free_port()
    direct, proxied = f"http://127.0.0.1:{port}/predict", f"http://127.0.0.1:{nginx_port}/predict"
    keepalive = f"http://127.0.0.1:{keepalive_port}/predict"
    with (
        DNSStub(servers.DNS_NAME, ["127.0.0.1"]) as dns,
        servers.nginx(
            upstream_port=port,
            listen_port=nginx_port,
            dns=dns,
            cpus=args.client_cpu,
            workdir=workdir,
            max_upload=MAX_UPLOAD,
        ) as (nginx_process, conf),
        servers.nginx_keepalive_variant(
            conf, upstream_port=port, listen_port=keepalive_port, cpus=args.client_cpu, workdir=workdir
        ) as keepalive_process,
    ):
        for backend in models.SERVICE_BACKENDS:
            for batch, levels in ((1, args.levels), (args.batch_size, args.batch_levels)):
                tag = f"{backend}-batch{batch}"
                say(f"service {tag}: starting gunicorn on core {args.server_cpu}")
                server = servers.start_classifier(
                    model_dir,
                    backend=backend,
                    port=port,
                    cpus=args.server_cpu,
                    max_batch_size=batch,
                    max_batch_delay_ms=args.batch_delay_ms,
                    threads=1,
                    workdir=workdir,
                    tag=tag,
                )
                try:
                    info = json.loads(servers.http_get(f"http://127.0.0.1:{port}/model")[1])
                    keys = {
                        "system": "service",
                        "backend": backend,
                        "batch": batch,
                        "batch_delay_ms": args.batch_delay_ms if batch > 1 else 0.0,
                        "model_info": {k: info.get(k) for k in ("backend", "batching", "threads")},
                    }
                    sweep.run(direct, server, None, levels, path="direct", **keys)
                    if batch == 1:
                        sweep.run(proxied, server, nginx_process, levels, path="nginx", **keys)
                    if batch == 1 and backend == "litert":
                        # What the stack's variable proxy_pass (no upstream keep-alive) costs, where the
                        # per-request cost matters most: the fastest backend.
                        sweep.run(
                            keepalive,
                            server,
                            keepalive_process,
                            args.keepalive_levels,
                            path="nginx-keepalive",
                            **keys,
                        )
                finally:
                    server.stop()
    say(f"baseline: starting uvicorn on core {args.server_cpu}")
    base_port = servers.free_port()
    baseline = servers.start_baseline(model_dir, port=base_port, cpus=args.server_cpu, workdir=workdir)
    try:
        sweep.run(
            f"http://127.0.0.1:{base_port}/predict",
            baseline,
            None,
            args.levels,
            system="baseline",
            backend=None,
            batch=1,
            batch_delay_ms=0.0,
            path="direct",
        )
    finally:
        baseline.stop()
    return points


def describe_method(args: argparse.Namespace, pinning: bool) -> list[str]:
    where = (
        f"servers and bare loops on core {args.server_cpu}; load generator, nginx and the DNS stub on core "
        f"{args.client_cpu} (taskset -c)"
        if pinning
        else "NOT pinned (fewer than 2 cores available): numbers include client/server interference"
    )
    return [
        f"Pinning: {where}.",
        f"Bare: the service's own decode_image + backend.predict, one image at a time, threads=1, "
        f"{args.bare_seconds:g} s per image after 1 s warm-up; the tutorial row times the baseline's own "
        "work the same way (PIL decode + Keras predict(), TF's default threads).",
        "Service: gunicorn + services/classifier/gunicorn.conf.py, 1 worker, CLASSIFIER_THREADS=1, "
        "CLASSIFIER_INTER_OP_THREADS=1, other settings at their defaults; batching off = "
        f"CLASSIFIER_MAX_BATCH_SIZE=1, on = {args.batch_size} with {args.batch_delay_ms:g} ms delay.",
        "nginx: services/nginx/nginx.conf.template rendered by entrypoint.sh `render` (1 worker, access log "
        "on), upstream by name through its variable proxy_pass, the name served by a small DNS stub in the "
        "benchmark process (as Docker's DNS in compose): no upstream keep-alive, as in the stack. For "
        "comparison, LiteRT also runs through a bench-only variant of that rendered config with a static "
        "`upstream` block and `keepalive 32` (nginx-keepalive).",
        "Baseline: bench/baseline_server.py, FastAPI + one uvicorn process, "
        "tf_keras.Sequential([hub.KerasLayer(same SavedModel)]), PIL decode + resize and model.predict() per "
        "request inside `async def`.",
        "Load: bench/loadgen.py, closed loop, one keep-alive connection per concurrent user posting the JPEG "
        f"as multipart to /predict; {args.warmup:g} s warm-up, then {args.duration:g} s measured per level "
        f"({', '.join(map(str, args.levels))}); a request counts when it completes in the measured window.",
        f"A measurement during which other processes took more than {args.max_interference:g}% of the "
        f"measured core is repeated (up to {args.retries} times, {args.retry_budget} in the run). Ratios "
        "within one run compare well; absolute numbers move between runs on a shared VM.",
    ]


def write_outputs(results: dict[str, Any], out: Path | None, markdown: Path) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1, default=_json_default) + "\n", encoding="utf-8")
        tmp.replace(out)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(report.render_markdown(results), encoding="utf-8")


def _json_default(value: object) -> object:
    return str(value)


def parser_error(message: str) -> None:
    print(f"python3 -m bench: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(args.report_only.read_text(encoding="utf-8"))
        results["manual_notes"] = results.get("manual_notes", []) + args.add_note
        results["checks"] = report.compute_checks(results)
        results["notes"] = report.derive_notes(results) + results["manual_notes"]
        write_outputs(results, args.report_only if args.add_note else None, args.markdown)
        print(args.markdown.read_text(encoding="utf-8"))
        return 0
    if args.add_note:
        parser_error("--add-note goes with --report-only")

    started = datetime.now(UTC)
    out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    available = os.sched_getaffinity(0)
    pinning = len(available) >= 2 and {int(args.server_cpu), int(args.client_cpu)} <= available
    if not pinning:
        args.server_cpu = args.client_cpu = None
    else:
        # This process (and the DNS stub thread in it) stays off the server's core.
        os.sched_setaffinity(0, {int(args.client_cpu)})
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "command": ["python3", "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "host": {
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "load_avg_before": load_average(),
            "versions": versions(),
        },
        "method": {
            "quick": args.quick,
            "pinned": pinning,
            "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu,
            "levels": args.levels,
            "batch_levels": args.batch_levels,
            "keepalive_levels": args.keepalive_levels,
            "max_interference_percent": args.max_interference,
            "retries_per_measurement": args.retries,
            "retry_budget": args.retry_budget,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "description": describe_method(args, pinning),
        },
        "images": {path.name: image_info(path) for path in IMAGES},
    }
    say(f"load average {results['host']['load_avg_before']} (a busy machine makes every number lower)")
    model_dir = models.ensure_model_dir(args.cache)
    results["model"] = models.model_summary(model_dir)
    say(models.MODEL_NOTE)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        retries = Retries(args.max_interference, args.retries, args.retry_budget, cpu=args.server_cpu)
        results["bare"] = run_bare(model_dir, args, retries)
        results["points"] = run_http(model_dir, args, workdir, retries)
        results["method"]["retries_used"] = retries.used
        results["method"]["waited_for_quiet_s"] = round(retries.waited_s, 1)
    finished = datetime.now(UTC)
    results["finished_at"] = finished.isoformat(timespec="seconds")
    results["duration_s"] = round((finished - started).total_seconds(), 1)
    results["host"]["load_avg_after"] = load_average()
    results["checks"] = report.compute_checks(results)
    results["notes"] = report.derive_notes(results)
    write_outputs(results, out, args.markdown)
    print(args.markdown.read_text(encoding="utf-8"))
    say(f"wrote {out} and {args.markdown} in {results['duration_s']:.0f} s")
    failed = [c["name"] for c in results["checks"] if c["passed"] is False]
    if failed:
        say(f"targets missed: {len(failed)} of {sum(c['passed'] is not None for c in results['checks'])}")
    return 0 if not any(math.isnan(p["rps"]) for p in results["points"]) else 1


if __name__ == "__main__":
    sys.exit(main())
