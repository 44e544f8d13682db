"""What every tally the locustfile keeps beside Locust's stats has in common, so that one function wires
them all (the locustfile's `setup_tally_listeners`, after Locust's own
`setup_distributed_stats_event_listeners`).

A tally counts on the processes that run users. A worker hands what it counted since its last report to
the master with every stats report (`drain`, under `key`), the master adds it up (`merge`; a missing or
malformed delta, from an older worker image, is ignored), and serves its totals at `route` on the web UI
(`snapshot`, JSON). All are reset when a test starts, by the UI's reset button and with --reset-stats. A
tally with a `file_option` is written as JSON to the path that option names when the master (or a local
run) exits. No Locust import: the tallies are unit-tested in-process.
"""

from __future__ import annotations

from typing import Any, Protocol


class Tally(Protocol):
    key: str  # of the delta in the worker -> master stats report
    route: str  # of the totals on the master's web UI
    file_option: str | None  # the option naming the file written at exit, if any

    def reset(self) -> None: ...

    def drain(self) -> Any:
        """The delta since the last drain (msgpack- and JSON-safe), then start again from zero."""
        ...

    def merge(self, delta: Any) -> None: ...

    def snapshot(self) -> Any:
        """The totals, as served at `route` and written to the file."""
        ...
