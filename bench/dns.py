"""A DNS stub on 127.0.0.1 that plays Docker's embedded DNS for an nginx run outside Docker: it answers A
queries for one name with a list of addresses (NXDOMAIN for any other name). The list may change while
nginx runs, as Docker's answers do when `--scale` adds or removes replicas.

Used by the benchmark (bench/servers.py) and by the nginx tests (tests/nginx): it lives here because
tests import the project's code, never the other way round.
"""

from __future__ import annotations

import socket
import struct
import threading

A_RECORD = 1
NXDOMAIN = 3


class DNSStub:
    def __init__(self, name: str, addresses: list[str]) -> None:
        self.name = name.lower().rstrip(".")
        self.addresses = list(addresses)
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)

    def __enter__(self) -> DNSStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            reply = self.answer(query)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def answer(self, query: bytes) -> bytes | None:
        """The reply to one query, or None for a packet that is not a single-question query."""
        if len(query) < 17:
            return None
        qid, _flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return None
        labels, pos = [], 12
        while pos < len(query) and query[pos]:
            length = query[pos]
            labels.append(query[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
            pos += 1 + length
        if pos + 5 > len(query):
            return None
        qtype = struct.unpack("!H", query[pos + 1 : pos + 3])[0]
        question = query[12 : pos + 5]
        self.queries += 1
        known = ".".join(labels).lower() == self.name
        addresses = list(self.addresses) if known and qtype == A_RECORD else []
        header = struct.pack("!HHHHHH", qid, 0x8180 | (0 if known else NXDOMAIN), 1, len(addresses), 0, 0)
        # Each answer points back at the question's name (0xC00C) with a 1 s TTL, as nginx re-asks anyway.
        records = b"".join(
            struct.pack("!HHHIH", 0xC00C, A_RECORD, 1, 1, 4) + socket.inet_aton(address)
            for address in addresses
        )
        return header + question + records
