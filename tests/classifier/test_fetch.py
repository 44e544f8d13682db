"""The img_url fetcher: allowlist, address checks, redirects, size cap, deadline; against a local server."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from classifier.errors import ApiError
from classifier.fetch import Allowlist, ImageFetcher, is_public, make_client, system_resolver
from tests.classifier.helpers import jpeg_bytes
from tests.classifier.image_server import ImageServer, image_server
from tests.keepalive_server import closes_kept_alive_connections

IMAGE = jpeg_bytes((10, 120, 200))


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with image_server(IMAGE) as running:
        yield running


@pytest_asyncio.fixture
async def client() -> AsyncIterator[object]:
    async with make_client(timeout_s=2.0) as http:
        yield http


def fetcher(client: object, allowlist: list[str], **overrides: object) -> ImageFetcher:
    options: dict[str, object] = {"max_bytes": 1024 * 1024, "timeout_s": 2.0, "max_redirects": 3}
    options.update(overrides)
    return ImageFetcher(client, allowlist, **options)  # type: ignore[arg-type]


def fake_dns(table: dict[str, str]):  # type: ignore[no-untyped-def]
    """Resolves names from `table` (so tests can make a name point anywhere), anything else normally."""

    async def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return [table[host]]
        return await system_resolver(host, port)

    return resolve


async def expect_error(fetch: ImageFetcher, url: str, status: int, code: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await fetch.fetch(url)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.detail
    return caught.value


@pytest.mark.asyncio
async def test_allowlisted_ip_is_fetched(client: object, server: ImageServer) -> None:
    data = await fetcher(client, ["127.0.0.1"]).fetch(server.url("/image.jpg"))
    assert data == IMAGE


@pytest.mark.asyncio
async def test_host_not_allowlisted_refused_before_connecting(client: object, server: ImageServer) -> None:
    before = len(server.paths_seen)
    await expect_error(fetcher(client, ["nginx"]), server.url("/image.jpg"), 403, "url_not_allowed")
    assert len(server.paths_seen) == before


@pytest.mark.asyncio
async def test_loopback_refused_for_a_wildcard_host(client: object, server: ImageServer) -> None:
    fetch = fetcher(client, ["*"])
    error = await expect_error(fetch, server.url("/image.jpg"), 403, "url_not_allowed")
    assert "non-public" in error.detail
    await expect_error(fetch, server.url("/image.jpg", host="localhost"), 403, "url_not_allowed")


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1"],
)
@pytest.mark.asyncio
async def test_private_and_special_addresses_refused_for_wildcard_hosts(client: object, address: str) -> None:
    fetch = fetcher(client, ["*.example.org"], resolver=fake_dns({"images.example.org": address}))
    await expect_error(fetch, "http://images.example.org/cat.jpg", 403, "url_not_allowed")


@pytest.mark.asyncio
async def test_private_address_allowed_for_an_exact_entry(client: object, server: ImageServer) -> None:
    # The lab's case: `nginx` resolves to a private Docker address and is allowlisted by name. The
    # connection goes to the address checked (here loopback), with the original Host header.
    fetch = fetcher(client, ["images.internal"], resolver=fake_dns({"images.internal": "127.0.0.1"}))
    data = await fetch.fetch(server.url("/image.jpg", host="images.internal"))
    assert data == IMAGE
    assert server.hosts_seen[-1] == f"images.internal:{server.port}"


@pytest.mark.asyncio
async def test_allowlist_matching_is_exact_not_a_prefix(client: object, server: ImageServer) -> None:
    fetch = fetcher(
        client, ["nginx"], resolver=fake_dns({"nginx.evil.com": "127.0.0.1", "evilnginx": "127.0.0.1"})
    )
    await expect_error(fetch, server.url("/image.jpg", host="nginx.evil.com"), 403, "url_not_allowed")
    await expect_error(fetch, server.url("/image.jpg", host="evilnginx"), 403, "url_not_allowed")
    # Case and a trailing dot do not make a different host.
    ok = fetcher(client, ["NGINX"], resolver=fake_dns({"nginx": "127.0.0.1"}))
    assert await ok.fetch(server.url("/image.jpg", host="nginx.")) == IMAGE


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.jpg", "file:///etc/passwd", "gopher://127.0.0.1/"])
@pytest.mark.asyncio
async def test_only_http_and_https(client: object, url: str) -> None:
    await expect_error(fetcher(client, ["127.0.0.1"]), url, 403, "url_not_allowed")


@pytest.mark.parametrize("url", ["not a url", "/images/cat.jpg", "http://", "http://[::1", "//127.0.0.1/x"])
@pytest.mark.asyncio
async def test_malformed_urls(client: object, url: str) -> None:
    await expect_error(fetcher(client, ["127.0.0.1"]), url, 422, "invalid_url")


@pytest.mark.asyncio
async def test_redirect_on_the_same_host_is_followed(client: object, server: ImageServer) -> None:
    data = await fetcher(client, ["127.0.0.1"]).fetch(server.url("/redirect?to=/image.jpg"))
    assert data == IMAGE


@pytest.mark.asyncio
async def test_redirect_to_a_host_not_allowlisted_refused(client: object, server: ImageServer) -> None:
    target = server.url("/image.jpg", host="localhost")
    fetch = fetcher(client, ["127.0.0.1"])
    before = server.paths_seen.count("/image.jpg")
    await expect_error(fetch, server.url(f"/redirect?to={target}"), 403, "url_not_allowed")
    assert server.paths_seen.count("/image.jpg") == before


@pytest.mark.asyncio
async def test_redirect_to_internal_address_refused(client: object, server: ImageServer) -> None:
    # A public host (by fake DNS) redirecting to the metadata service address.
    fetch = fetcher(client, ["*"], resolver=fake_dns({"public.example": "127.0.0.1"}))
    fetch_public = fetcher(
        client, ["public.example", "*"], resolver=fake_dns({"public.example": "127.0.0.1"})
    )
    url = server.url("/redirect?to=http://169.254.169.254/latest/meta-data/", host="public.example")
    await expect_error(fetch, url, 403, "url_not_allowed")  # the first hop is already loopback
    await expect_error(fetch_public, url, 403, "url_not_allowed")  # the second hop is link-local


@pytest.mark.asyncio
async def test_redirect_loop_stops(client: object, server: ImageServer) -> None:
    error = await expect_error(fetcher(client, ["127.0.0.1"]), server.url("/loop"), 422, "url_unreachable")
    assert "redirect" in error.detail


@pytest.mark.asyncio
async def test_declared_size_over_cap_refused_unread(client: object, server: ImageServer) -> None:
    started = time.perf_counter()
    await expect_error(
        fetcher(client, ["127.0.0.1"], max_bytes=100_000), server.url("/big-declared"), 413, "url_too_large"
    )
    assert time.perf_counter() - started < 2.0


@pytest.mark.asyncio
async def test_streamed_size_over_the_cap_stops_the_download(client: object, server: ImageServer) -> None:
    await expect_error(
        fetcher(client, ["127.0.0.1"], max_bytes=100_000), server.url("/big-chunked"), 413, "url_too_large"
    )
    time.sleep(0.3)  # let the server thread notice the closed connection
    # Far from the 50 MB the server would have sent: the client stopped soon after the cap.
    assert server.bytes_sent.get("/big-chunked", 0) < 10 * 1024 * 1024


@pytest.mark.asyncio
async def test_slow_server_hits_the_deadline(client: object, server: ImageServer) -> None:
    started = time.perf_counter()
    await expect_error(fetcher(client, ["127.0.0.1"], timeout_s=0.5), server.url("/slow"), 422, "url_timeout")
    assert time.perf_counter() - started < 2.0


@pytest.mark.asyncio
async def test_deadline_covers_the_whole_download(client: object, server: ImageServer) -> None:
    # Each byte arrives well within a per-read timeout; only a whole-fetch deadline stops this.
    started = time.perf_counter()
    await expect_error(fetcher(client, ["127.0.0.1"], timeout_s=0.8), server.url("/drip"), 422, "url_timeout")
    assert time.perf_counter() - started < 2.5


@pytest.mark.asyncio
async def test_http_error_status_is_unreachable(client: object, server: ImageServer) -> None:
    error = await expect_error(
        fetcher(client, ["127.0.0.1"]), server.url("/missing.jpg"), 422, "url_unreachable"
    )
    assert "404" in error.detail


@pytest.mark.asyncio
async def test_connection_refused_is_unreachable(client: object) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    await expect_error(
        fetcher(client, ["127.0.0.1"]), f"http://127.0.0.1:{port}/image.jpg", 422, "url_unreachable"
    )


@pytest.mark.asyncio
async def test_unresolvable_name_is_unreachable(client: object) -> None:
    await expect_error(
        fetcher(client, ["no-such-host.invalid"]), "http://no-such-host.invalid/x.jpg", 422, "url_unreachable"
    )


def test_is_public() -> None:
    public = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"]
    internal = [
        "127.0.0.1",
        "10.0.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.251",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ]
    assert all(is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(is_public(ipaddress.ip_address(a)) for a in internal)


def test_allowlist_parsing() -> None:
    allow = Allowlist.parse(["nginx", " Images.Example.ORG. ", "*.cdn.example", "::1", "[::0:1]"])
    assert allow.match("nginx") == "exact"
    assert allow.match("images.example.org") == "exact"
    assert allow.match("a.cdn.example") == "wildcard"
    assert allow.match("cdn.example") is None
    assert allow.match("::1") == "exact"
    assert allow.match("other") is None
    assert Allowlist.parse(["*"]).match("anything.example") == "wildcard"


@pytest.mark.asyncio
async def test_a_request_lost_on_a_closed_kept_alive_connection_goes_once_more(client: object) -> None:
    """The issue's reload-nginx 422 ("Server disconnected without sending a response"): the second fetch
    goes out on the connection the first kept alive, which the server closes unanswered; the fetch is sent
    again on a new connection and gets the image."""
    fetch = fetcher(client, ["127.0.0.1"])
    with closes_kept_alive_connections(IMAGE, "image/jpeg") as port:
        for _ in range(3):
            assert await fetch.fetch(f"http://127.0.0.1:{port}/image.jpg") == IMAGE
