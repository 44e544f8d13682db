"""lab.cgroups against fixture trees of /proc and the cgroup mounts, shaped like real hosts: this one (cgroup
v1, cpu and cpuacct mounted apart, a cgroup2 tree beside them), a combined `cpu,cpuacct` v1 mount, and a
pure v2 host, with Docker's cgroupfs and systemd paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.cgroups import CgroupCpu, CgroupError, CgroupReader

DOCKER_ID = "3f2a" * 16
PID = 4242


def _mountinfo(lines: list[tuple[str, str, str]]) -> str:
    """(mount point, fstype, super options) -> mountinfo lines as the kernel writes them."""
    return "".join(
        f"{30 + i} 23 0:{29 + i} / {point} rw,relatime shared:{i} - {fstype} {fstype} {opts}\n"
        for i, (point, fstype, opts) in enumerate(lines)
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_host(tmp_path: Path, *, combined: bool, quota_us: int = 50_000) -> CgroupReader:
    proc, sys = tmp_path / "proc", tmp_path / "sys" / "fs" / "cgroup"
    if combined:
        mounts = [(sys / "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct")]
        cpu = acct = sys / "cpu,cpuacct" / "docker" / DOCKER_ID
        membership = f"4:cpu,cpuacct:/docker/{DOCKER_ID}\n"
    else:
        mounts = [(sys / "cpu", "cgroup", "rw,cpu"), (sys / "cpuacct", "cgroup", "rw,cpuacct")]
        cpu, acct = sys / "cpu" / "docker" / DOCKER_ID, sys / "cpuacct" / "docker" / DOCKER_ID
        membership = f"2:cpuacct:/docker/{DOCKER_ID}\n1:cpu:/docker/{DOCKER_ID}\n"
    mounts += [(sys / "memory", "cgroup", "rw,memory"), (sys / "unified", "cgroup2", "rw")]
    _write(proc / "self" / "mountinfo", _mountinfo([(str(p), t, o) for p, t, o in mounts]))
    _write(
        proc / str(PID) / "cgroup",
        f"9:name=systemd:/docker/{DOCKER_ID}\n{membership}0::/docker/{DOCKER_ID}\n",
    )
    _write(
        cpu / "cpu.stat",
        "nr_periods 200\nnr_throttled 50\nthrottled_time 2500000000\nnr_bursts 0\nburst_time 0\n",
    )
    _write(cpu / "cpu.cfs_quota_us", f"{quota_us}\n")
    _write(cpu / "cpu.cfs_period_us", "100000\n")
    _write(acct / "cpuacct.usage", "10250000000\n")
    return CgroupReader(proc)


def v2_host(tmp_path: Path, cpu_max: str | None = "50000 100000") -> CgroupReader:
    proc, root = tmp_path / "proc", tmp_path / "sys" / "fs" / "cgroup"
    scope = f"/system.slice/docker-{DOCKER_ID}.scope"
    _write(
        proc / "self" / "mountinfo",
        _mountinfo([(str(root), "cgroup2", "rw,nsdelegate,memory_recursiveprot")]),
    )
    _write(proc / str(PID) / "cgroup", f"0::{scope}\n")
    directory = root / scope.lstrip("/")
    _write(
        directory / "cpu.stat",
        "usage_usec 10250000\nuser_usec 9000000\nsystem_usec 1250000\nnr_periods 200\nnr_throttled 50\n"
        "throttled_usec 2500000\nnr_bursts 0\nburst_usec 0\n",
    )
    if cpu_max is not None:
        _write(directory / "cpu.max", cpu_max + "\n")
    return CgroupReader(proc)


@pytest.mark.parametrize("combined", [False, True])
def test_v1_reads_usage_quota_and_throttling_from_both_controllers(tmp_path: Path, combined: bool) -> None:
    stat = v1_host(tmp_path, combined=combined).read(PID)
    assert (stat.version, stat.usage_s, stat.quota_cores) == (1, 10.25, 0.5)
    assert (stat.nr_periods, stat.nr_throttled, stat.throttled_s) == (200, 50, 2.5)


def test_v1_without_a_quota(tmp_path: Path) -> None:
    assert v1_host(tmp_path, combined=False, quota_us=-1).read(PID).quota_cores is None


def test_v2_reads_cpu_stat_and_cpu_max(tmp_path: Path) -> None:
    stat = v2_host(tmp_path).read(PID)
    assert (stat.version, stat.usage_s, stat.quota_cores) == (2, 10.25, 0.5)
    assert (stat.nr_periods, stat.nr_throttled, stat.throttled_s) == (200, 50, 2.5)


@pytest.mark.parametrize("cpu_max", ["max 100000", None])
def test_v2_without_a_quota(tmp_path: Path, cpu_max: str | None) -> None:
    assert v2_host(tmp_path, cpu_max).read(PID).quota_cores is None


def test_a_gone_process_is_an_error_line_not_an_exception(tmp_path: Path) -> None:
    reader = v2_host(tmp_path)
    targets = [
        {"container": "loadlab-classifier-1", "service": "classifier", "pid": PID},
        {"container": "loadlab-classifier-2", "service": "classifier", "pid": PID + 1},
    ]
    with pytest.raises(CgroupError):
        reader.read(PID + 1)
    ok, gone = CgroupCpu(lambda: targets, reader)()
    assert ok["container"] == "loadlab-classifier-1" and ok["usage_s"] == 10.25 and ok["quota_cores"] == 0.5
    assert gone["container"] == "loadlab-classifier-2" and "error" in gone and "usage_s" not in gone


@pytest.mark.skipif(not Path("/proc/self/cgroup").is_file(), reason="needs Linux /proc")
def test_this_hosts_own_cgroup_reads() -> None:
    # On the machine the lab runs on: its own process's cgroup, whatever the version.
    stat = CgroupReader().read(os.getpid())
    assert stat.version in (1, 2) and stat.usage_s > 0
