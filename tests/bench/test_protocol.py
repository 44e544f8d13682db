"""The load generator's request bytes and response parsing, the DNS stub's answers and the keep-alive
variant of the nginx config (no sockets, no processes)."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from pathlib import Path

import pytest

from bench.dns import DNSStub
from bench.loadgen import Recorder, Response, multipart_request, read_response
from bench.servers import keepalive_variant

REPO = Path(__file__).resolve().parents[2]


def test_multipart_request_is_one_complete_post() -> None:
    image = b"\xff\xd8\xff" + bytes(range(256)) * 4
    request = multipart_request("127.0.0.1", 8000, "/predict", image, "cat.jpg")
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /predict HTTP/1.1"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert int(headers[b"Content-Length"]) == len(body)
    boundary = headers[b"Content-Type"].split(b"boundary=")[1]
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    assert b'name="file"; filename="cat.jpg"' in body
    assert image in body


def _parse(raw: bytes) -> Response:
    async def go() -> Response:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_response(reader)

    return asyncio.run(go())


def test_read_response_with_content_length_leaves_the_next_response() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\n"
        b"Server-Timing: queue;dur=0.5, decode;dur=3.25, infer;dur=9.00, total;dur=13.1\r\n"
        b"content-length: 5\r\n\r\nhello"
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    )
    response = _parse(raw)
    assert response.status == 200
    assert response.body == b"hello"
    assert response.headers[b"server-timing"].startswith(b"queue;dur=0.5")


def test_read_response_chunked() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n"
    assert _parse(raw).body == b"Wikipedia "


def test_recorder_counts_only_the_measured_window() -> None:
    recorder = Recorder(measure_start=10.0, measure_end=20.0)
    ok = Response(200, {b"server-timing": b"decode;dur=2.00, infer;dur=8.00"}, b'{"batch_size": 3}')
    recorder.ok(9.0, 9.5, ok)  # warm-up
    recorder.ok(9.9, 10.2, ok)  # started in warm-up, completed in the window: counted
    recorder.ok(19.9, 20.5, ok)  # completed after the window
    recorder.error(15.0, "HTTP 500")
    recorder.error(25.0, "HTTP 500")
    assert recorder.latencies == [pytest.approx(0.3)]
    assert recorder.warmup_requests == 1
    assert recorder.server_timing == {"decode": [0.002], "infer": [0.008]}
    assert recorder.batch_sizes == [3]
    assert recorder.errors == 1


def _query(name: str, qtype: int = 1) -> bytes:
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)


def test_dns_stub_answers_its_name_only() -> None:
    dns = DNSStub("classifier.bench.test", ["127.0.0.1"])
    try:
        reply = dns.answer(_query("Classifier.Bench.Test"))
        assert reply is not None
        qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
        assert (qid, flags & 0xF, qd, an) == (0x1234, 0, 1, 1)
        assert reply.endswith(socket.inet_aton("127.0.0.1"))
        other = dns.answer(_query("example.org"))
        assert other is not None
        assert struct.unpack("!H", other[2:4])[0] & 0xF == 3  # NXDOMAIN
        assert struct.unpack("!H", other[6:8])[0] == 0
        aaaa = dns.answer(_query("classifier.bench.test", qtype=28))
        assert aaaa is not None and struct.unpack("!H", aaaa[6:8])[0] == 0  # no IPv6 answer
        assert dns.answer(b"\0\1") is None
    finally:
        dns.sock.close()


def _render_template_naively() -> str:
    """The project's nginx template with every ${VAR} filled in, as entrypoint.sh's envsubst would."""
    template = (REPO / "services" / "nginx" / "nginx.conf.template").read_text()
    values = {
        "NGINX_LISTEN": "127.0.0.1:8080",
        "NGINX_TEMP_DIR": "/tmp/n",
        "NGINX_UPSTREAM": "classifier:8000",
    }
    return re.sub(r"\$\{(NGINX_[A-Z_]+)\}", lambda m: values.get(m.group(1), "x"), template)


def test_keepalive_variant_of_the_real_template() -> None:
    conf = _render_template_naively()
    variant = keepalive_variant(conf, upstream="127.0.0.1:9000", listen="127.0.0.1:9001", pid="/tmp/ka.pid")
    assert "pid /tmp/ka.pid;" in variant and "pid /tmp/n/nginx.pid;" not in variant
    assert "listen 127.0.0.1:9001 default_server;" in variant and "127.0.0.1:8080" not in variant
    assert (
        "upstream bench_keepalive {\n        server 127.0.0.1:9000;\n        keepalive 32;\n    }" in variant
    )
    assert "$classifier;" not in variant.replace("set $classifier", "")
    assert variant.count("proxy_pass http://bench_keepalive;") == conf.count("proxy_pass http://$classifier;")
    assert 'proxy_set_header Connection "";' in variant
    with pytest.raises(ValueError, match="template changed"):
        keepalive_variant("events {}\n", upstream="a:1", listen="b:2", pid="/p")
