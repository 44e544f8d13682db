"""The nginx config: rendered by its entrypoint, checked by `nginx -t`, then run for real on loopback.

The live test stands in for the compose network: a fake DNS server plays Docker's (its answers change
while nginx runs, as with `--scale`), and stdlib HTTP servers on 127.0.0.2, .3, .4 play the replicas.
Needs nginx on the host (Debian: `apt-get install nginx-light`) and envsubst (gettext-base); skipped
without them.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.dns import DNSStub
from classifier.errors import PAYLOAD_TOO_LARGE
from tests.nginx.fakes import Replica

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "services" / "nginx" / "entrypoint.sh"
IMAGES = ROOT / "images"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
MAX_UPLOAD = 1_000_000
OVERHEAD = 4096  # room for multipart framing; not the .env default, to show the entrypoint uses the variable
LIMITS = {
    "CLASSIFIER_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    "CLASSIFIER_MULTIPART_OVERHEAD_BYTES": str(OVERHEAD),
}

needs_envsubst = pytest.mark.skipif(
    shutil.which("envsubst") is None, reason="envsubst missing (gettext-base)"
)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx not installed (apt-get install nginx-light)")


def _render(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NGINX_TEMP_DIR": str(tmp), **env}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "render"], env=full, capture_output=True, text=True, timeout=30
    )


def _directive(conf: str, name: str) -> list[str]:
    return [
        line.strip().removeprefix(name).strip(" ;")
        for line in conf.splitlines()
        if line.strip().startswith(name)
    ]


@needs_envsubst
def test_entrypoint_refuses_missing_or_bad_settings(tmp_path: Path) -> None:
    missing = _render(tmp_path, CLASSIFIER_MULTIPART_OVERHEAD_BYTES="10")
    assert missing.returncode != 0 and "CLASSIFIER_MAX_UPLOAD_BYTES" in missing.stderr
    no_overhead = _render(tmp_path, CLASSIFIER_MAX_UPLOAD_BYTES="100")
    assert no_overhead.returncode != 0 and "CLASSIFIER_MULTIPART_OVERHEAD_BYTES" in no_overhead.stderr
    not_bytes = _render(tmp_path, **{**LIMITS, "CLASSIFIER_MAX_UPLOAD_BYTES": "10MB"})
    assert not_bytes.returncode != 0 and "byte count" in not_bytes.stderr
    bad_overhead = _render(tmp_path, **{**LIMITS, "CLASSIFIER_MULTIPART_OVERHEAD_BYTES": "64k"})
    assert bad_overhead.returncode != 0 and "CLASSIFIER_MULTIPART_OVERHEAD_BYTES" in bad_overhead.stderr
    bad_log = _render(tmp_path, **LIMITS, NGINX_ACCESS_LOG="sometimes")
    assert bad_log.returncode != 0 and "NGINX_ACCESS_LOG" in bad_log.stderr


@needs_envsubst
def test_rendered_config_with_compose_defaults(tmp_path: Path) -> None:
    done = _render(tmp_path, **LIMITS)
    assert done.returncode == 0, done.stderr
    conf = Path(done.stdout.strip()).read_text()
    assert "${" not in conf, "a placeholder was left unrendered"
    body = str(MAX_UPLOAD + OVERHEAD)
    assert _directive(conf, "client_max_body_size") == [body]
    assert _directive(conf, "client_body_buffer_size") == [body]  # the largest upload stays in memory
    assert _directive(conf, "resolver ") == ["127.0.0.11 valid=1s ipv6=off"]
    assert _directive(conf, "set $classifier") == ["classifier:8000"]
    assert _directive(conf, "proxy_pass") == ["http://$classifier"] * 2  # the variable form: re-resolved
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in conf
    assert _directive(conf, "listen") == ["80 default_server"]
    assert "access_log /dev/stdout lab;" in conf and "error_log stderr" in conf
    # /nginx-status: loopback and the networks the container is attached to, nothing else.
    rules = next(line for line in conf.splitlines() if "deny all;" in line)
    assert rules.strip().startswith("allow 127.0.0.0/8;")
    for net in _directly_connected_networks():
        assert f"allow {net};" in rules

    explicit = _render(tmp_path, **LIMITS, NGINX_STATUS_ALLOW="10.1.0.0/16", NGINX_ACCESS_LOG="off")
    conf = Path(explicit.stdout.strip()).read_text()
    assert "allow 10.1.0.0/16; deny all;" in conf and "allow 127" not in conf
    assert "access_log off;" in conf and "access_log /dev/stdout" not in conf


def _directly_connected_networks() -> list[str]:
    nets = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == "00000000" and fields[1] != "00000000":
            dest = socket.inet_ntoa(bytes.fromhex(fields[1])[::-1])
            bits = bin(int(fields[7], 16)).count("1")
            nets.append(f"{dest}/{bits}")
    return nets


@needs_nginx
@needs_envsubst
def test_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    done = _render(tmp_path, **LIMITS)
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [str(NGINX), "-t", "-p", str(tmp_path), "-c", done.stdout.strip()],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr


# --- a live nginx on loopback --------------------------------------------------------------------------


@dataclass
class Lab:
    port: int
    dns: DNSStub
    replicas: dict[str, Replica]
    stdout: Path
    stderr: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
        finally:
            conn.close()

    def predict(self, n: int) -> Counter[str]:
        served: Counter[str] = Counter()
        for _ in range(n):
            status, headers, body = self.request(
                "POST", "/predict", b"x" * 100, {"Content-Type": "image/jpeg"}
            )
            assert status == 200, body
            served[headers["x-served-by"]] += 1
        return served

    def access_log(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.read_text().splitlines() if line.startswith("{")]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab() -> Iterator[Lab]:
    # nginx workers run as nobody: everything they read or write lives in a world-readable temp dir.
    work = Path(tempfile.mkdtemp(prefix="lab-nginx-"))
    work.chmod(0o755)
    shutil.copytree(IMAGES, work / "images")
    (work / "images").chmod(0o755)
    replica_port, port = _free_port("127.0.0.2"), _free_port("127.0.0.1")
    with ExitStack() as stack:
        replicas = {
            name: stack.enter_context(Replica(name, address, replica_port))
            for name, address in [
                ("replica-a", "127.0.0.2"),
                ("replica-b", "127.0.0.3"),
                ("replica-c", "127.0.0.4"),
            ]
        }
        dns = stack.enter_context(DNSStub("classifier.lab.test", ["127.0.0.2", "127.0.0.3"]))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin",
            **LIMITS,
            "NGINX_RESOLVER": f"127.0.0.1:{dns.port}",
            "NGINX_UPSTREAM": f"classifier.lab.test:{replica_port}",
            "NGINX_LISTEN": f"127.0.0.1:{port}",
            "NGINX_IMAGES_ROOT": str(work),
            "NGINX_TEMP_DIR": str(work / "run"),
            "NGINX_WORKER_PROCESSES": "2",
        }
        stdout, stderr = work / "access.log", work / "error.log"
        with stdout.open("w") as out, stderr.open("w") as err:
            proc = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, stdout=out, stderr=err)
        lab = Lab(port, dns, replicas, stdout, stderr)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if lab.request("GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert proc.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.1)
            yield lab
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    shutil.rmtree(work, ignore_errors=True)


@needs_nginx
@needs_envsubst
def test_live_nginx_serves_balances_retries_and_follows_dns(lab: Lab) -> None:
    status, headers, body = lab.request("GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["content-type"] == "application/json"
    status, _, body = lab.request("GET", "/nginx-status")
    assert status == 200 and body.startswith(b"Active connections")

    photo = IMAGES / "chelsea_640x480.jpg"
    status, headers, body = lab.request("GET", "/images/chelsea_640x480.jpg")
    assert (status, body) == (200, photo.read_bytes())
    assert headers["content-type"] == "image/jpeg"
    assert lab.request("GET", "/images/../../etc/passwd")[0] in {400, 404}

    # Both addresses of the name get traffic; headers from the replica pass through.
    served = lab.predict(60)
    assert set(served) == {"replica-a", "replica-b"} and min(served.values()) >= 5, served
    status, headers, _ = lab.request("POST", "/predict/tf", b'{"img_url": "http://nginx/images/x.jpg"}')
    assert status == 200 and headers["server-timing"] == "infer;dur=1.5, total;dur=2"
    assert lab.request("GET", "/readyz")[0] == 200  # other API paths reach a replica too

    # The largest allowed upload, with multipart framing, is accepted and kept in memory.
    big = b"\xff" * (MAX_UPLOAD + 2000)
    status, _, body = lab.request(
        "POST", "/predict", big, {"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert status == 200 and json.loads(body)["bytes"] == len(big)
    assert "buffered to a temporary file" not in lab.stderr.read_text()
    # Over the classifier's body limit: nginx answers with the classifier's own error code.
    status, headers, body = lab.request("POST", "/predict", b"\0" * (MAX_UPLOAD + OVERHEAD + 1))
    assert status == 413 and json.loads(body)["error"] == PAYLOAD_TOO_LARGE
    assert headers["content-type"] == "application/json"

    # A replica added to DNS while nginx runs gets traffic within seconds, without a reload.
    lab.dns.addresses.append("127.0.0.4")
    deadline = time.monotonic() + 10
    while lab.replicas["replica-c"].requests["/predict"] == 0 and time.monotonic() < deadline:
        lab.predict(5)
    assert lab.replicas["replica-c"].requests["/predict"] > 0, "the new address got no traffic"

    # A failing replica (503) costs no failed request: nginx retries the POST on another address.
    lab.replicas["replica-b"].fail_with = 503
    served = lab.predict(40)
    assert "replica-b" not in served and sum(served.values()) == 40
    assert any(str(e["upstream_status"]).startswith("503, 200") for e in lab.access_log())

    # A replica that vanished (connection refused, still in the DNS cache): retried as well.
    lab.replicas["replica-b"].fail_with = None
    lab.replicas["replica-a"].stop()
    served = lab.predict(40)
    assert set(served) == {"replica-b", "replica-c"}, served
    assert any(str(e["upstream_status"]).startswith("502, 200") for e in lab.access_log())

    # Every try failed: the client gets the last try's answer, the replica's own 503 or, when that try
    # found no server, nginx's 502, both in the API's JSON error shape.
    lab.replicas["replica-b"].fail_with = 503
    lab.replicas["replica-c"].stop()
    for _ in range(10):
        status, _, body = lab.request("POST", "/predict", b"x")
        assert status in {502, 503} and json.loads(body)["error"] in {"not_ready", "upstream_unavailable"}
    # No replica left in DNS but a stopped one: a JSON 502 from nginx, not an HTML page.
    lab.dns.addresses[:] = ["127.0.0.2"]
    # valid=1s is compared with a clock of whole seconds: a cached answer lives up to 2 s.
    time.sleep(2.5)
    for _ in range(5):
        status, headers, body = lab.request("POST", "/predict", b"x")
        assert status == 502 and json.loads(body)["error"] == "upstream_unavailable", body
        assert headers["content-type"] == "application/json"

    log = lab.access_log()
    assert {"upstream_addr", "upstream_response_time", "request_id", "served_by"} <= set(log[-1])


NGINX_OWN_405 = [
    ("TRACE", "/predict", "POST"),
    ("TRACE", "/predict/tf/", "POST"),
    ("TRACE", "/readyz", "GET"),
    ("TRACE", "/healthz", "GET, HEAD"),
    ("POST", "/healthz", "GET, HEAD"),
    ("DELETE", "/healthz", "GET, HEAD"),
    ("OPTIONS", "/healthz", "GET, HEAD"),
    ("POST", "/images/chelsea_640x480.jpg", "GET, HEAD"),
]


@needs_nginx
@needs_envsubst
def test_nginx_own_405_has_allow_and_the_error_shape(lab: Lab) -> None:
    # RFC 9110 15.5.6: a 405 must list the target's methods in Allow. nginx answers these itself (it refuses
    # TRACE before any location; /healthz and /images/ are its own), so no replica gets them.
    for method, path, allow in NGINX_OWN_405:
        status, headers, body = lab.request(method, path)
        assert status == 405, (method, path, body)
        assert headers["allow"] == allow, (method, path)
        assert headers["content-type"] == "application/json", (method, path)
        answer = json.loads(body)
        assert answer["error"] == "method_not_allowed" and method in answer["detail"], answer
    assert sum(sum(replica.requests.values()) for replica in lab.replicas.values()) == 0
    # nginx's own routes still answer the methods they allow.
    assert lab.request("HEAD", "/healthz")[0] == 200
    assert lab.request("GET", "/healthz")[0] == 200
    assert lab.request("HEAD", "/images/chelsea_640x480.jpg")[0] == 200
