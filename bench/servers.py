"""The processes a benchmark run starts and stops: the classifier (gunicorn), the tutorial-style baseline
(uvicorn), nginx and the small DNS server nginx's variable proxy_pass needs. Each is pinned with `taskset -c`,
runs in its own session (so its workers can be stopped with it, and only they), and logs to a file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench.dns import DNSStub

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER_DIR = REPO / "services" / "classifier"
NGINX_DIR = REPO / "services" / "nginx"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
DNS_NAME = "classifier.bench.test"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Process:
    """A started server: its Popen, its log, and a stop that ends its whole session and nothing else."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_http(self, url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if http_get(url)[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready at {url} after {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.25)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if not self.alive():
            return
        # The session's id is the leader's pid: this reaches the gunicorn master and its workers, nothing
        # else.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in this session (gunicorn master and workers)."""
        return session_cpu_seconds(self.popen.pid)


def session_cpu_seconds(sid: int) -> float:
    """User + system CPU seconds of the live processes in session `sid`."""
    total = 0.0
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                times = proc.cpu_times()
                total += times.user + times.system
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return total


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus is not None else argv


def start_classifier(
    model_dir: Path,
    *,
    backend: str,
    port: int,
    cpus: str | None,
    max_batch_size: int,
    max_batch_delay_ms: float,
    threads: int,
    workdir: Path,
    tag: str,
) -> Process:
    metrics_dir = workdir / f"metrics-{tag}"
    env = {
        **os.environ,
        "CLASSIFIER_BACKEND": backend,
        # gunicorn runs in the service's folder: a relative path would point elsewhere.
        "CLASSIFIER_MODEL_DIR": str(model_dir.resolve()),
        "CLASSIFIER_WORKERS": "1",
        "CLASSIFIER_THREADS": str(threads),
        "CLASSIFIER_INTER_OP_THREADS": str(threads),
        "CLASSIFIER_MAX_BATCH_SIZE": str(max_batch_size),
        "CLASSIFIER_MAX_BATCH_DELAY_MS": str(max_batch_delay_ms),
        "CLASSIFIER_BIND_HOST": "127.0.0.1",
        "CLASSIFIER_PORT": str(port),
        "CLASSIFIER_LOG_LEVEL": "warning",
        "CLASSIFIER_METRICS_DIR": str(metrics_dir),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    argv = [sys.executable, "-m", "gunicorn", "--config", str(CLASSIFIER_DIR / "gunicorn.conf.py")]
    process = Process(
        f"classifier ({tag})", pinned(cpus, argv), env=env, cwd=CLASSIFIER_DIR, log=workdir / f"{tag}.log"
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/readyz")
    except BaseException:
        process.stop()
        raise
    return process


def start_baseline(
    model_dir: Path, *, port: int, cpus: str | None, workdir: Path, tag: str = "baseline"
) -> Process:
    env = {
        **os.environ,
        "BENCH_BASELINE_MODEL": str(model_dir.resolve() / "saved_model"),
        "BENCH_BASELINE_LABELS": str(model_dir.resolve() / "labels.txt"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_server:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = Process("baseline", pinned(cpus, argv), env=env, cwd=REPO, log=workdir / f"{tag}.log")
    try:
        process.wait_http(f"http://127.0.0.1:{port}/")
    except BaseException:
        process.stop()
        raise
    return process


def env_default(name: str) -> str:
    """A knob's default as `.env` documents it (the compose file passes the same to the stack)."""
    for line in (REPO / ".env").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    raise KeyError(f"{name} is not in .env")


@contextlib.contextmanager
def nginx(
    *, upstream_port: int, listen_port: int, dns: DNSStub, cpus: str | None, workdir: Path, max_upload: int
) -> Iterator[tuple[Process, Path]]:
    """nginx from the project's template, rendered by its entrypoint.sh, in front of the upstream port."""
    # nginx's workers run as `nobody`: their temp dir must be reachable by them.
    run_dir = Path(tempfile.mkdtemp(prefix="bench-nginx-", dir=workdir))
    run_dir.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin",
        "CLASSIFIER_MAX_UPLOAD_BYTES": str(max_upload),
        # The classifier runs with its defaults, so nginx gets the same allowance, from the one place.
        "CLASSIFIER_MULTIPART_OVERHEAD_BYTES": env_default("CLASSIFIER_MULTIPART_OVERHEAD_BYTES"),
        "NGINX_RESOLVER": f"127.0.0.1:{dns.port}",
        "NGINX_UPSTREAM": f"{dns.name}:{upstream_port}",
        "NGINX_LISTEN": f"127.0.0.1:{listen_port}",
        "NGINX_TEMP_DIR": str(run_dir),
        # One worker: nginx gets one core (shared with the load generator).
        "NGINX_WORKER_PROCESSES": "1",
        "NGINX_IMAGES_ROOT": str(REPO),
        "NGINX_STATUS_ALLOW": "127.0.0.0/8",
    }
    rendered = subprocess.run(
        ["sh", str(NGINX_DIR / "entrypoint.sh"), "render"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    conf = Path(rendered.stdout.strip().splitlines()[-1])
    process = Process(
        "nginx", pinned(cpus, ["nginx", "-c", str(conf)]), env=env, cwd=run_dir, log=workdir / "nginx.log"
    )
    try:
        process.wait_http(f"http://127.0.0.1:{listen_port}/healthz", timeout_s=20)
        yield process, conf
    finally:
        process.stop()


KEEPALIVE_UPSTREAM = "bench_keepalive"


def keepalive_variant(conf: str, *, upstream: str, listen: str, pid: str) -> str:
    """A bench-only variant of the rendered nginx config: the same server, but a static `upstream` block with
    `keepalive`, instead of the variable proxy_pass (which resolves per request and opens a new upstream
    connection for every request). It measures what the stack's choice costs; it is never deployed.
    """

    def replace(pattern: str, replacement: str, text: str, count: int = 0) -> str:
        changed, found = re.subn(pattern, replacement, text, count=count, flags=re.MULTILINE)
        if not found:
            raise ValueError(f"the rendered nginx config has no {pattern!r}: the template changed")
        return changed

    conf = replace(r"^pid [^;]+;", f"pid {pid};", conf, 1)
    conf = replace(r"^(\s*)listen \S+ default_server;", rf"\1listen {listen} default_server;", conf, 1)
    conf = replace(
        r"^    server \{",
        f"    upstream {KEEPALIVE_UPSTREAM} {{\n        server {upstream};\n        keepalive 32;\n    }}\n\n"
        "    server {",
        conf,
        1,
    )
    # Upstream keep-alive needs HTTP/1.1 (the template sets it) and no "Connection: close" header; set next to
    # the template's own proxy_set_header lines, which locations inherit.
    conf = replace(
        r"^(\s*)proxy_http_version 1\.1;",
        r'\1proxy_http_version 1.1;\n\1proxy_set_header Connection "";',
        conf,
        1,
    )
    return replace(r"proxy_pass http://\$classifier;", f"proxy_pass http://{KEEPALIVE_UPSTREAM};", conf)


@contextlib.contextmanager
def nginx_keepalive_variant(
    conf: Path, *, upstream_port: int, listen_port: int, cpus: str | None, workdir: Path
) -> Iterator[Process]:
    variant = keepalive_variant(
        conf.read_text(encoding="utf-8"),
        upstream=f"127.0.0.1:{upstream_port}",
        listen=f"127.0.0.1:{listen_port}",
        pid=str(conf.parent / "nginx-keepalive.pid"),
    )
    path = conf.parent / "nginx-keepalive.conf"
    path.write_text(variant, encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin"}
    process = Process(
        "nginx (keep-alive variant)",
        pinned(cpus, ["nginx", "-c", str(path)]),
        env=env,
        cwd=conf.parent,
        log=workdir / "nginx-keepalive.log",
    )
    try:
        process.wait_http(f"http://127.0.0.1:{listen_port}/healthz", timeout_s=20)
        yield process
    finally:
        process.stop()
