"""Fetching an `img_url` without turning the service into an open proxy (SSRF guard).

Rules, checked again on every redirect hop:
- scheme http or https only;
- the host must match the allowlist: an exact entry (hostname or IP), or a wildcard (`*` = any host,
  `*.example.org` = its subdomains);
- the host is resolved once here and the connection goes to that very address (no second lookup that a
  rebinding DNS could answer differently); TLS still verifies the certificate for the hostname (SNI);
- a host matched only by a wildcard must resolve to public addresses: loopback, private, link-local,
  multicast, unspecified and reserved ones are refused. An exact entry may resolve anywhere: the lab's own
  `nginx` lives on a private Docker network, and naming it is the operator's explicit choice;
- one deadline covers the whole fetch, and the body is counted while it streams in and dropped past the cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

from classifier.errors import ApiError

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def url_not_allowed(detail: str) -> ApiError:
    return ApiError("url_not_allowed", detail)


def url_unreachable(detail: str) -> ApiError:
    return ApiError("url_unreachable", detail)


@dataclass(frozen=True, slots=True)
class Allowlist:
    exact: frozenset[str]
    suffixes: tuple[str, ...]
    any_host: bool

    @classmethod
    def parse(cls, hosts: Iterable[str]) -> Allowlist:
        exact: set[str] = set()
        suffixes: list[str] = []
        any_host = False
        for raw in hosts:
            host = raw.strip().lower().rstrip(".")
            if host == "*":
                any_host = True
            elif host.startswith("*."):
                suffixes.append(host[1:])
            elif host:
                exact.add(_canonical_host(host))
        return cls(frozenset(exact), tuple(suffixes), any_host)

    def match(self, host: str) -> str | None:
        """`"exact"`, `"wildcard"` or None (not allowed)."""
        if host in self.exact:
            return "exact"
        if self.any_host or host.endswith(self.suffixes):
            return "wildcard"
        return None


def _canonical_host(host: str) -> str:
    # IPv6 literals compare in their compressed form, however the user wrote them.
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class ImageFetcher:
    def __init__(
        self,
        client: httpx.AsyncClient,
        allowlist: Iterable[str],
        *,
        max_bytes: int,
        timeout_s: float,
        max_redirects: int,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._client = client
        self.allowlist = Allowlist.parse(allowlist)
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self._resolve = resolver

    async def fetch(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url)
        except (TimeoutError, httpx.TimeoutException):
            raise ApiError("url_timeout", f"no complete image within {self.timeout_s:g} s") from None

    async def _follow(self, url: str) -> bytes:
        current = _parse(url)
        for _hop in range(self.max_redirects + 1):
            address = await self._check(current)
            response = await self._send(current, address)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    try:
                        current = current.join(response.headers["location"])
                    except httpx.InvalidURL as exc:
                        raise url_unreachable(f"redirect to an invalid URL: {exc}") from None
                    continue
                if response.status_code != 200:
                    raise url_unreachable(f"{current.host} answered HTTP {response.status_code}")
                return await self._read_capped(response)
            finally:
                await response.aclose()
        raise url_unreachable(f"more than {self.max_redirects} redirects")

    async def _check(self, url: httpx.URL) -> str:
        """Applies the allowlist to one hop and returns the address to connect to."""
        if url.scheme not in ("http", "https"):
            raise url_not_allowed(f"scheme {url.scheme!r} is not allowed (http or https only)")
        host = _canonical_host(url.host.lower().rstrip("."))
        if not host:
            raise ApiError("invalid_url", "the URL has no host")
        match = self.allowlist.match(host)
        if match is None:
            raise url_not_allowed(f"host {host!r} is not in the allowlist")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            candidates = await self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise url_unreachable(f"cannot resolve {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in candidates]
        if not addresses:
            raise url_unreachable(f"{host!r} has no address")
        if match == "wildcard":
            refused = [a for a in addresses if not is_public(a)]
            if refused:
                # All of them, not just the first: the client must not get a say in which one we pick.
                raise url_not_allowed(f"{host!r} resolves to a non-public address ({refused[0]})")
        return str(addresses[0])

    async def _send(self, url: httpx.URL, address: str) -> httpx.Response:
        pinned = url.copy_with(host=address)
        request = self._client.build_request(
            "GET",
            pinned,
            headers={"Host": _host_header(url)},
            # TLS keeps verifying the certificate for the name, though we connect to the address.
            extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
        )
        retries = 1
        while True:
            try:
                return await self._client.send(request, stream=True, follow_redirects=False)
            except httpx.TimeoutException:
                raise
            except httpx.RemoteProtocolError as exc:
                # The server closed a kept-alive connection as the request went out (an nginx reload closes
                # its idle ones): no answer came. A GET is idempotent, so it goes once more, on a new
                # connection (RFC 9112, 9.3.1); the pool has dropped the closed one.
                if retries:
                    retries -= 1
                    continue
                error: httpx.HTTPError = exc
            except httpx.HTTPError as exc:
                error = exc
            detail = f"{type(error).__name__}: {error}"
            raise url_unreachable(f"cannot fetch from {url.host!r}: {detail}") from None

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ApiError("url_too_large", f"image is {declared} bytes, the limit is {self.max_bytes}")
        body = bytearray()
        try:
            # Raw bytes: we asked for no content coding, and inflating a hostile gzip stream could turn one
            # chunk into far more than the cap before it is counted.
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ApiError("url_too_large", f"image is over the limit of {self.max_bytes} bytes")
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            raise url_unreachable(f"download broke off: {type(exc).__name__}: {exc}") from None
        return bytes(body)


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ApiError("invalid_url", f"not a valid URL: {exc}") from None
    if parsed.scheme and parsed.scheme not in ("http", "https"):
        raise url_not_allowed(f"scheme {parsed.scheme!r} is not allowed (http or https only)")
    if not parsed.is_absolute_url:
        raise ApiError("invalid_url", "the URL must be absolute (http://host/path)")
    return parsed


def _host_header(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return host if url.port is None else f"{host}:{url.port}"


def make_client(timeout_s: float, max_connections: int = 64) -> httpx.AsyncClient:
    """The one client per worker process (kept for connection reuse to nginx)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        # Proxy variables in the container's environment must not reroute (or get around) the allowlist.
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": "mlserve-loadlab-classifier", "Accept-Encoding": "identity"},
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=16),
    )
