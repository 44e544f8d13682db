"""A container's CPU accounting from its cgroup, read on the Docker host: CPU used, the CFS quota it runs
under, and how often the quota stopped it (CFS throttling), for cgroup v1 and v2.

Docker's own `docker stats` gives a CPU % per sample but not the throttling, which is what a quota adds
to tail latency: a replica that spends its quota early in a 100 ms period waits out the rest of it. The
kernel counts that per cgroup in `cpu.stat`:
- v2 (one unified tree): `cpu.stat` has usage_usec, nr_periods, nr_throttled, throttled_usec; `cpu.max`
  is "<quota> <period>" or "max <period>".
- v1 (one tree per controller): the `cpu` controller's `cpu.stat` has nr_periods, nr_throttled and
  throttled_time (ns), its `cpu.cfs_quota_us` / `cpu.cfs_period_us` the quota (-1: none); the usage is in
  the `cpuacct` controller's `cpuacct.usage` (ns). The two may be one mount (`cpu,cpuacct`) or two.
A container's cgroup is the one its main process is in (/proc/PID/cgroup, PID from `docker inspect`),
found under the mount points in /proc/self/mountinfo, so the cgroup driver (cgroupfs: /docker/<id>,
systemd: /system.slice/docker-<id>.scope) does not matter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Raw file of the samples, one JSON line per container per sampling time.
CGROUP_CPU_FILE = "cgroup_cpu.jsonl"


class CgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class CpuStat:
    """Cumulative counters of one cgroup at one time (they only grow while the cgroup lives)."""

    version: int  # 1 or 2
    usage_s: float  # CPU time used by every process in the cgroup
    nr_periods: int  # CFS periods in which the cgroup ran under a quota
    nr_throttled: int  # periods in which it had spent its quota and was stopped
    throttled_s: float  # time its processes were stopped for that
    quota_cores: float | None  # the CFS quota as cores (quota / period); None: no limit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Mount:
    fstype: str  # cgroup (v1) or cgroup2
    root: str  # the part of the hierarchy mounted there ("/" on the host)
    point: Path
    controllers: frozenset[str]  # v1: cpu, cpuacct, ...; empty for v2


def _mounts(mountinfo: str) -> list[_Mount]:
    """cgroup mounts in /proc/self/mountinfo (`id parent dev root point opts [tags] - type src superopts`)."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        controllers = frozenset(tail[2].split(",")) if tail[0] == "cgroup" else frozenset()
        mounts.append(_Mount(tail[0], fields[3], Path(_unescape(fields[4])), controllers))
    return mounts


def _unescape(path: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def _under(mount: _Mount, cgroup_path: str) -> Path:
    relative = cgroup_path
    if mount.root != "/" and (cgroup_path == mount.root or cgroup_path.startswith(mount.root + "/")):
        relative = cgroup_path[len(mount.root) :]
    return mount.point / relative.lstrip("/")


def _keyed(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


class CgroupReader:
    """Reads `CpuStat` of a process's cgroup. `proc` is /proc on the host; tests point it elsewhere."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._mounts: list[_Mount] | None = None

    def mounts(self) -> list[_Mount]:
        if self._mounts is None:
            self._mounts = _mounts((self.proc / "self" / "mountinfo").read_text())
        return self._mounts

    def read(self, pid: int) -> CpuStat:
        try:
            membership = (self.proc / str(pid) / "cgroup").read_text()
        except OSError as err:
            raise CgroupError(f"no cgroup for pid {pid}: {err}") from err
        v1: dict[str, str] = {}
        unified: str | None = None
        for line in membership.splitlines():
            hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if hierarchy == "0" and not controllers:
                unified = path
            for controller in controllers.split(","):
                if controller:
                    v1[controller] = path
        # Hybrid hosts (a v2 tree mounted beside v1 controllers) keep the cpu controller in v1.
        if "cpu" in v1:
            return self._read_v1(v1)
        if unified is not None:
            return self._read_v2(unified)
        raise CgroupError(f"pid {pid} is in no cpu cgroup")

    def _mount(self, fstype: str, controller: str | None) -> _Mount:
        for mount in self.mounts():
            if mount.fstype == fstype and (controller is None or controller in mount.controllers):
                return mount
        raise CgroupError(f"no {fstype} mount{f' with {controller}' if controller else ''} in mountinfo")

    def _read_v1(self, paths: dict[str, str]) -> CpuStat:
        cpu = _under(self._mount("cgroup", "cpu"), paths["cpu"])
        acct = _under(self._mount("cgroup", "cpuacct"), paths.get("cpuacct", paths["cpu"]))
        stat = _keyed((cpu / "cpu.stat").read_text())
        quota = int((cpu / "cpu.cfs_quota_us").read_text())
        period = int((cpu / "cpu.cfs_period_us").read_text())
        return CpuStat(
            version=1,
            usage_s=int((acct / "cpuacct.usage").read_text()) / 1e9,
            nr_periods=stat.get("nr_periods", 0),
            nr_throttled=stat.get("nr_throttled", 0),
            throttled_s=stat.get("throttled_time", 0) / 1e9,
            quota_cores=quota / period if quota > 0 and period > 0 else None,
        )

    def _read_v2(self, path: str) -> CpuStat:
        directory = _under(self._mount("cgroup2", None), path)
        stat = _keyed((directory / "cpu.stat").read_text())
        quota_cores = None
        max_file = directory / "cpu.max"
        if max_file.is_file():  # absent in the root cgroup and when the cpu controller is not enabled
            quota, _, period = max_file.read_text().strip().partition(" ")
            if quota != "max" and period:
                quota_cores = int(quota) / int(period)
        return CpuStat(
            version=2,
            usage_s=stat.get("usage_usec", 0) / 1e6,
            nr_periods=stat.get("nr_periods", 0),
            nr_throttled=stat.get("nr_throttled", 0),
            throttled_s=stat.get("throttled_usec", 0) / 1e6,
            quota_cores=quota_cores,
        )


# What a stack names for sampling: container, compose service and the host PID of its main process.
Target = dict[str, Any]


class CgroupCpu:
    """A Sampler's sample function: one line per container of `targets()` with its cgroup's counters, or the
    error that kept them from being read (Docker Desktop: the containers' /proc is not the host's)."""

    def __init__(self, targets: Callable[[], list[Target]], reader: CgroupReader | None = None) -> None:
        self._targets = targets
        self._reader = reader or CgroupReader()

    def __call__(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for target in self._targets():
            head = {"container": target["container"], "service": target["service"], "pid": target["pid"]}
            try:
                rows.append({**head, **self._reader.read(int(target["pid"])).to_dict()})
            except (CgroupError, OSError, ValueError) as err:
                rows.append({**head, "error": f"{type(err).__name__}: {err}"})
        return rows
