"""The report's charts as inline SVG strings (matplotlib's Agg/SVG backends: no browser-side JS, no CDN)."""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, and the same output in CI as on a laptop

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from lab.capacity import at_knee
from lab.limits import EXTRAPOLATION_LIMIT, GOOD_SCALING_EFFICIENCY
from lab.metrics import ConfigResult, MeasurementMetrics
from lab.plan import GroupPlan, Plan
from lab.summary import Summary

matplotlib.rcParams.update(
    {
        "svg.fonttype": "none",  # text stays text: smaller, searchable, rendered with the page's fonts
        "svg.hashsalt": "lab-report",  # stable element ids, so rebuilding a report gives the same file
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)

FLAT_COLORS = {"nginx": "#9e9ac8", "locust-master": "#bdbdbd"}
# Server-Timing stages (lab.server_timing.PARTS) and what is left of the client's time.
SPLIT_COLORS = {"queue": "#9ecae1", "fetch": "#bcbddc", "decode": "#6baed6", "infer": "#2171b5"}
OTHER_COLOR, OUTSIDE_COLOR = "#c6dbef", "#fdae6b"


def _to_svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    # Keep only the <svg> element (the XML prolog and DOCTYPE are not valid inside HTML), without the
    # RDF metadata block: its URLs are names, but a reader checking "no external references" trips on them.
    svg = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)


def _empty(title: str, why: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 1.6))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.4, why, ha="center", va="center", color="#666666")
    return _to_svg(fig)


def representative(summary: Summary) -> list[ConfigResult]:
    """The measurements the per-configuration charts show: capacity.at_knee's, with requests."""
    return [c for c in at_knee(summary.configs, summary.analysis.knee) if c.metrics.requests]


def _series_key(entry: ConfigResult) -> str:
    parts = []
    if entry.workers_per_replica is not None:
        parts.append(f"w{entry.workers_per_replica}")
    if entry.backend is not None:
        parts.append(entry.backend)
    if entry.batching is not None:
        parts.append(f"batch {entry.batching}")
    if entry.cpus_per_replica is not None:
        parts.append(f"{entry.cpus_per_replica:g} cores each")
    if entry.step is None:
        m = entry.metrics
        parts.append(f"{m.target_rps:g} req/s" if m.target_rps else f"{m.users} users")
    else:
        parts.append("knee")
    return ", ".join(parts)


def _mean_at(
    points: dict[int, list[ConfigResult]], xs: list[int], value: Callable[[MeasurementMetrics], float | None]
) -> list[float]:
    """Mean of `value` over the repeats at each x (NaN where none: matplotlib leaves a gap)."""
    out = []
    for x in xs:
        values = [v for e in points[x] if (v := value(e.metrics)) is not None]
        out.append(sum(values) / len(values) if values else float("nan"))
    return out


def chart_vs_replicas(summary: Summary) -> str:
    title = "Throughput and latency vs replicas"
    entries = representative(summary)
    if not entries:
        return _empty(title, "no completed measurement")
    series: dict[str, dict[int, list[ConfigResult]]] = defaultdict(lambda: defaultdict(list))
    for entry in entries:
        series[_series_key(entry)][entry.replicas].append(entry)
    fig, (ax_rps, ax_lat) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for name, points in series.items():
        xs = sorted(points)
        ax_rps.plot(xs, _mean_at(points, xs, lambda m: m.rps), marker="o", label=name)
        line = ax_lat.plot(xs, _mean_at(points, xs, lambda m: m.p95_ms), marker="o", label=f"{name} p95")[0]
        color = line.get_color()
        p50 = _mean_at(points, xs, lambda m: m.p50_ms)
        p99 = _mean_at(points, xs, lambda m: m.p99_ms)
        ax_lat.plot(xs, p50, ":", marker=".", color=color, label=f"{name} p50")
        ax_lat.plot(xs, p99, "--", marker="^", color=color, label=f"{name} p99")
    slo = summary.thresholds.slo_p95_ms
    if slo is not None:
        ax_lat.axhline(slo, color="#cc0000", linewidth=1, linestyle="-.", label=f"SLO p95 {slo:g} ms")
    replicas = sorted({e.replicas for e in entries})
    for ax in (ax_rps, ax_lat):
        ax.set_xticks(replicas)
        ax.set_xlabel("classifier replicas")
        ax.grid(alpha=0.3)
    ax_rps.set_ylabel("throughput (req/s)")
    ax_rps.set_ylim(bottom=0)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_ylim(bottom=0)
    ax_rps.set_title("Throughput")
    ax_lat.set_title("p50 (dotted) / p95 (solid) / p99 (dashed)")
    ax_rps.legend(fontsize=7)
    ax_lat.legend(fontsize=6, ncol=1)
    fig.suptitle(title)
    return _to_svg(fig)


def chart_throughput_vs_p95(summary: Summary) -> str:
    title = "Throughput vs p95 latency, per configuration (each point one load level)"
    curves: dict[str, list[MeasurementMetrics]] = defaultdict(list)
    failed: dict[str, list[MeasurementMetrics]] = defaultdict(list)
    for entry in summary.configs:
        m = entry.metrics
        if m.requests and m.p95_ms is not None:
            curves[entry.stack_label].append(m)
            if not entry.slo_met:
                failed[entry.stack_label].append(m)
    if not curves:
        return _empty(title, "no completed measurement")
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for label, points in curves.items():
        points.sort(key=lambda m: (m.target_rps or 0, m.users or 0))
        line = ax.plot([m.rps for m in points], [m.p95_ms for m in points], marker="o", label=label)[0]
        missed = failed[label]
        ax.scatter(
            [m.rps for m in missed], [m.p95_ms for m in missed], marker="x", s=60, color=line.get_color()
        )
    slo = summary.thresholds.slo_p95_ms
    if slo is not None:
        ax.axhline(slo, color="#cc0000", linewidth=1, linestyle="-.", label=f"SLO p95 {slo:g} ms")
    ax.set_xlabel("throughput (req/s)")
    ax.set_ylabel("p95 latency (ms)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title + "; x = SLO missed")
    return _to_svg(fig)


def chart_server_split(summary: Summary) -> str:
    title = "Where the time goes: mean server-side split (Server-Timing) and time outside the server"
    entries = [e for e in representative(summary) if e.metrics.server_total_ms is not None]
    if not entries:
        return _empty(title, "no server timing (server_timing.json) for these measurements")
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.42 * len(entries)))
    labels = [e.label for e in entries]
    left = [0.0] * len(entries)
    parts: list[tuple[str, str, Callable[[MeasurementMetrics], float | None]]] = [
        (stage, color, lambda m, stage=stage: m.server_split_ms.get(stage))
        for stage, color in SPLIT_COLORS.items()
        if any(stage in e.metrics.server_split_ms for e in entries)
    ]
    parts.append(("other (server)", OTHER_COLOR, lambda m: m.server_other_ms))
    parts.append(
        ("outside the server (nginx, network, client)", OUTSIDE_COLOR, lambda m: m.outside_server_ms)
    )
    for name, color, value in parts:
        values = [value(e.metrics) or 0.0 for e in entries]
        ax.barh(labels, values, left=left, color=color, label=name)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("mean time per request (ms)")
    ax.grid(axis="x", alpha=0.3)
    # Below the axes: inside, the legend would hide the bars it explains.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    ax.set_title(title)
    return _to_svg(fig)


def chart_cpu(summary: Summary) -> str:
    title = "CPU per container (mean cores during the measurement)"
    entries = [e for e in representative(summary) if e.metrics.cpu_by_container]
    if not entries:
        return _empty(title, "no container statistics (docker stats) for these measurements")
    host_cpus = summary.host_cpus
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * len(entries)))
    labels = [e.label for e in entries]
    palette = {"classifier": plt.get_cmap("Blues"), "locust-worker": plt.get_cmap("Oranges")}
    seen: set[str] = set()
    for row, entry in enumerate(entries):
        left = 0.0
        services = entry.metrics.service_by_container
        containers = sorted(
            entry.metrics.cpu_by_container.items(), key=lambda kv: (services.get(kv[0], ""), kv[0])
        )
        per_service: dict[str, int] = defaultdict(int)
        for name, pct in containers:
            service = services.get(name, "")
            per_service[service] += 1
            cores = pct / 100.0
            cmap = palette.get(service)
            color = (
                cmap(0.45 + 0.12 * (per_service[service] % 4))
                if cmap
                else FLAT_COLORS.get(service, "#d9d9d9")
            )
            legend = service if service not in seen else None
            seen.add(service)
            ax.barh(row, cores, left=left, color=color, edgecolor="white", label=legend)
            if cores > 0.15:
                # "mlserve-classifier-2" -> "classifier-2": the project prefix says nothing here.
                short = name[name.find(service) :] if service and service in name else name
                ax.text(left + cores / 2, row, short, fontsize=6, ha="center", va="center")
            left += cores
    busy = [
        (row, e.metrics.host_busy_cores)
        for row, e in enumerate(entries)
        if e.metrics.host_busy_cores is not None
    ]
    if busy:
        # What the containers do not show: the whole machine's busy cores (other processes included).
        ax.scatter([b for _, b in busy], [row for row, _ in busy], marker="|", s=400, color="#000000",
                   zorder=3, label="whole machine busy")  # fmt: skip
    ax.axvline(host_cpus, color="#cc0000", linewidth=1, linestyle="-.", label=f"machine: {host_cpus} cores")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("CPU cores (100 % = one core)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=4, frameon=False)
    ax.set_title(title)
    return _to_svg(fig)


def chart_efficiency(summary: Summary) -> str:
    title = "Scaling efficiency: RPS with N replicas / (N x RPS with the fewest replicas)"
    eff = {
        label: e.efficiency
        for label, e in summary.analysis.scaling_efficiency.items()
        if e.efficiency is not None
    }
    if len(eff) < 2:
        return _empty(title, "needs at least two replica counts with the same other settings")
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.4 * len(eff)))
    labels = list(eff)
    values = [eff[k] * 100 for k in labels]
    colors = ["#31a354" if eff[k] >= GOOD_SCALING_EFFICIENCY else "#fd8d3c" for k in labels]
    ax.barh(labels, values, color=colors)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.0f} %", va="center", fontsize=7)
    ax.axvline(100, color="#444444", linewidth=1, linestyle=":")
    ax.invert_yaxis()
    ax.set_xlabel("% of linear scaling")
    ax.set_xlim(0, max(110, max(values) * 1.15))
    ax.set_title(title)
    return _to_svg(fig)


def chart_timeline(entry: ConfigResult) -> str:
    """One measurement over time: throughput and failures, p50/p95, users and healthy replicas; each
    fault marked where it was applied (shaded while it lasted) and where the traffic recovered."""
    m = entry.metrics
    title = f"{entry.label} over time"
    if m.timeline is None or not m.timeline.t_s:
        return _empty(title, "no per-second timeline (timeline.json) for this measurement")
    tl = m.timeline
    fig, (ax_rps, ax_lat, ax_n) = plt.subplots(
        3, 1, figsize=(8, 5.2), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]}
    )
    # Each point is the second [t, t + 1): bars span it, lines sit at its middle.
    # Successful requests, the failed ones stacked on them: a refused request is no throughput.
    ax_rps.bar(tl.t_s, tl.rps, width=0.95, align="edge", color="#6baed6", label="successful/s")
    ax_rps.bar(
        tl.t_s, tl.failures, width=0.95, align="edge", bottom=tl.rps, color="#cb181d", label="failed/s"
    )
    ax_rps.set_ylabel("req/s")
    for key, color, values in (("p50", "#41ab5d", tl.p50_ms), ("p95", "#084594", tl.p95_ms)):
        points = [(t + 0.5, v) for t, v in zip(tl.t_s, values, strict=True) if v is not None]
        ax_lat.plot([t for t, _ in points], [v for _, v in points], color=color, linewidth=1.2, label=key)
    ax_lat.set_ylabel("ms (per second)")
    ax_lat.set_ylim(bottom=0)
    if tl.users:
        ax_n.step([t for t, _ in tl.users], [n for _, n in tl.users], where="post", color="#fd8d3c",
                  label="Locust users")  # fmt: skip
    if tl.replicas:
        ax_n.step([t for t, _ in tl.replicas], [n for _, n in tl.replicas], where="post", color="#2171b5",
                  label="healthy replicas")  # fmt: skip
    ax_n.set_ylabel("count")
    ax_n.set_ylim(bottom=0)
    ax_n.set_xlabel("seconds from the start of the measurement")
    for fault in m.faults:
        if fault.at_s is None:
            continue
        for ax in (ax_rps, ax_lat, ax_n):
            ax.axvline(fault.at_s, color="#cb181d", linestyle="--", linewidth=1)
            if fault.lasted_s:
                ax.axvspan(fault.at_s, fault.at_s + fault.lasted_s, color="#cb181d", alpha=0.08)
            if fault.recovery_s is not None:
                ax.axvline(fault.at_s + fault.recovery_s, color="#238b45", linestyle=":", linewidth=1.2)
        recovered = (
            f", recovered +{fault.recovery_s:g} s" if fault.recovery_s is not None else ", not recovered"
        )
        label = fault.fault.split("@")[0] + recovered
        ax_rps.annotate(
            label,
            (fault.at_s, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color="#cb181d",
            va="bottom",
        )
    for ax in (ax_rps, ax_lat, ax_n):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax_rps.set_title(title, pad=14)
    return _to_svg(fig)


def _mark_faults(axes: list[Any], m: MeasurementMetrics) -> None:
    for fault in m.faults:
        if fault.at_s is None:
            continue
        for ax in axes:
            ax.axvline(fault.at_s, color="#cb181d", linestyle="--", linewidth=1)
            if fault.lasted_s:
                ax.axvspan(fault.at_s, fault.at_s + fault.lasted_s, color="#cb181d", alpha=0.08)
            if fault.recovery_s is not None:
                ax.axvline(fault.at_s + fault.recovery_s, color="#238b45", linestyle=":", linewidth=1.2)
        axes[0].annotate(
            fault.fault.split("@")[0],
            (fault.at_s, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color="#cb181d",
            va="bottom",
        )


# Panels of the per-replica chart: query key (lab.prometheus.CHART_KEYS), y label, scale to the unit shown.
REPLICA_PANELS = (("rps", "req/s", 1.0), ("p95_s", "p95 ms", 1000.0), ("queue_depth", "queue depth", 1.0))


def chart_replicas(entry: ConfigResult) -> str:
    """The monitoring profile's per-replica series (prometheus.json) on the timeline's time axis: request
    rate, p95 inside the replica and queue depth, one line per replica, gaps where a replica had no
    sample (killed, restarting), faults marked as on the timeline."""
    m = entry.metrics
    title = f"{entry.label}: per replica (Prometheus, one point per scrape)"
    rs = m.replica_series
    if rs is None or not rs.t_s:
        return _empty(title, m.prometheus_series or "no Prometheus series for this measurement")
    fig, axes = plt.subplots(len(REPLICA_PANELS), 1, figsize=(8, 5.2), sharex=True)
    names = sorted({name for lines in rs.by_key.values() for name in lines})
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    for ax, (key, ylabel, scale) in zip(axes, REPLICA_PANELS, strict=True):
        for name, values in rs.by_key.get(key, {}).items():
            # NaN breaks the line: a replica without samples shows as a gap, not as a drop to 0.
            ax.plot(rs.t_s, [v * scale for v in values], marker=".", markersize=3, linewidth=1.1,
                    color=colors[name], label=name)  # fmt: skip
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title="replica")
    axes[-1].set_xlabel("seconds from the start of the measurement")
    _mark_faults(list(axes), m)
    axes[0].set_title(title, pad=14)
    return _to_svg(fig)


def chart_plan(plan: Plan, group: GroupPlan) -> str:
    """Model vs measured: each run's capacity (held-out counts hollow), the fitted X(N) with its band
    over the counts the plan looked at, the need, and the answer."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    band = group.band
    # Out to the plan's own limit (or its answer past it, with --force): where the band widens.
    reach = max(EXTRAPOLATION_LIMIT * max(group.fit.counts), group.answer or 0)
    shown = [i for i, n in enumerate(band.n) if n <= reach]
    n = [band.n[i] for i in shown]
    ax.fill_between(n, [band.low[i] for i in shown], [band.high[i] for i in shown], color="#c6dbef",
                    label=f"{band.confidence:.0%} band (bootstrap over runs)")  # fmt: skip
    ax.plot(n, [band.mid[i] for i in shown], color="#2171b5", label=f"{group.fit.model.upper()} fit")
    for count in group.measured:
        face = "#08306b" if count.fitted else "white"
        ax.scatter([count.replicas] * len(count.runs), count.runs, s=18, zorder=3, facecolors=face,
                   edgecolors="#08306b")  # fmt: skip
    ax.axhline(
        plan.need_rps, color="#e6550d", linestyle="--", linewidth=1, label=f"need {plan.need_rps:g} req/s"
    )
    if group.answer is not None:
        ax.axvline(group.answer, color="#31a354", linestyle=":", linewidth=1, label=f"plan: {group.answer}")
    ax.axvspan(band.fitted_range[0], band.fitted_range[1], color="#f0f0f0", zorder=0, label="fitted range")
    ax.set_xlabel("replicas")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("capacity req/s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{group.group}: model vs measured (filled: fitted runs, hollow: held out)")
    return _to_svg(fig)


def all_charts(summary: Summary) -> list[tuple[str, str]]:
    charts = [
        ("Throughput and latency vs replicas", chart_vs_replicas(summary)),
        ("Throughput vs p95 (load levels / ramp steps)", chart_throughput_vs_p95(summary)),
        ("Server-time split", chart_server_split(summary)),
        ("CPU per container", chart_cpu(summary)),
        ("Scaling efficiency", chart_efficiency(summary)),
    ]
    plan = summary.plan
    charts += [(f"Model vs measured: {g.group}", chart_plan(plan, g)) for g in (plan.groups if plan else [])]
    charts += [
        (f"Timeline: {entry.label}", chart_timeline(entry))
        for entry in summary.configs
        if entry.metrics.timeline is not None
    ]
    charts += [
        (f"Per replica: {entry.label}", chart_replicas(entry))
        for entry in summary.configs
        if entry.metrics.replica_series is not None
    ]
    return charts
