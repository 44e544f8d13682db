"""`lab report`: summary.json, summary.md and report.html of a run, rebuilt from its raw files alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from lab.budget import BUDGET_HEADER, BUDGET_NOTE, budget_rows
from lab.charts import all_charts
from lab.limits import (
    GENERATOR_CPU_LIMIT_PCT,
    LATE_ARRIVALS_SHARE,
    RECOVERY_CONFIDENCE,
    RECOVERY_P95_TOLERANCE,
    RECOVERY_RPS_TOLERANCE,
    SOAK_GROWTH_LIMIT,
    TIMELINE_WINDOW_S,
)
from lab.metrics import ConfigResult, MeasurementMetrics, Thresholds
from lab.plan import (
    LATENCY_HEADER,
    MODEL_HEADER,
    PREDICTION_HEADER,
    group_text,
    latency_rows,
    model_rows,
    prediction_rows,
)
from lab.summary import Summary, build_summary
from lab.timeline import FaultImpact

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.82rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
tr.recommended td { background: #e5f5e0; font-weight: 600; }
.verdict { background: #f7f7f7; border-left: 4px solid #2171b5; padding: 0.75rem 1rem; line-height: 1.5; }
.bad { color: #b30000; } .ok { color: #1a7f37; } .meta { color: #666; font-size: 0.85rem; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
"""


def _fmt(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value}{suffix}"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _load(users: int | None, target_rps: float | None) -> str:
    if target_rps:
        return f"{target_rps:g} req/s ({users} users)"
    return f"{users} users"


def _rps(m: MeasurementMetrics) -> str:
    # Successful requests: a refused one answered in microseconds is no throughput.
    text = _fmt(m.ok_rps)
    if m.failures:
        text += f" (+{_fmt(round(m.rps - m.ok_rps, 3))} failed/s)"
    if m.achieved_ratio is not None:
        text += f" ({m.achieved_ratio:.0%} of target)"
    return text


def _late(m: MeasurementMetrics) -> str:
    if m.arrivals_late is None or m.arrivals_dropped is None:
        return "—"
    text = f"{m.arrivals_late} / {m.arrivals_dropped}"
    return text + " ⚠" if m.too_few_users else text


@dataclass(frozen=True)
class Row:
    cells: list[str]
    recommended: bool = False  # highlighted in HTML; decided on the label, not on the cell's text


def capacity_rows(summary: Summary) -> list[Row]:
    first: dict[str, ConfigResult] = {}
    for entry in summary.configs:
        first.setdefault(entry.stack_label, entry)
    a = summary.analysis
    recommended = a.recommended.label if a.recommended is not None else None
    rows = []
    for label, entry in first.items():
        eff = a.scaling_efficiency[label].efficiency if label in a.scaling_efficiency else None
        knee = a.knee.get(label)
        rows.append(
            Row(
                [
                    ("★ " if label == recommended else "") + label,
                    str(entry.replicas),
                    _fmt(entry.workers_per_replica),
                    _fmt(entry.backend),
                    _fmt(entry.batching),
                    _capacity(summary, label),
                    _load(knee.users, knee.target_rps) if knee else "—",
                    _fmt(a.peak_rps.get(label)),
                    f"{eff:.0%}" if eff is not None else "—",
                    *(_quantized_cells(summary, label) if a.agreement else []),
                ],
                recommended=label == recommended,
            )
        )
    return rows


def _quantized_cells(summary: Summary, label: str) -> list[str]:
    """A quantized model's throughput against the other backend and its accuracy, side by side."""
    a = summary.analysis
    tradeoff = a.tradeoff_of(label)
    agreement = a.agreement.get(label)
    return [tradeoff.cell() if tradeoff is not None else "—", agreement.cell() if agreement else "—"]


CAPACITY_HEADER = [
    "Config",
    "Replicas",
    "Workers/replica",
    "Backend",
    "Batching",
    "Capacity (req/s within SLO)",
    "At load",
    "Peak req/s",
    "Scaling eff.",
]
# Shown when a configuration served a quantized model: nobody reads its speed without its accuracy.
QUANTIZED_HEADER = ["Quantized: throughput vs other backend", "Agreement with float (build check)"]


def capacity_header(summary: Summary) -> list[str]:
    return CAPACITY_HEADER + (QUANTIZED_HEADER if summary.analysis.agreement else [])


INTENDED_COLUMN = "From intended start p50 / p95 / p99 ms"


def _intended(m: MeasurementMetrics) -> str:
    if not m.target_rps:
        return "closed: no intended time"
    values = (m.intended_p50_ms, m.intended_p95_ms, m.intended_p99_ms)
    return "—" if None in values else " / ".join(f"{v:g}" for v in values)


MEASUREMENT_HEADER = [
    "Measurement",
    "Load",
    "Requests",
    "Failures",
    "Req/s ok",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    INTENDED_COLUMN,
    "Queue ms",
    "Infer ms",
    "Classifier cores",
    "Machine busy cores",
    "Mem MB",
    "Generator CPU max %",
    "Arrival CV",
    "Late / dropped",
    "SLO met",
]


def measurement_rows(summary: Summary) -> list[Row]:
    rows = []
    for entry in summary.configs:
        m = entry.metrics
        status = "" if m.status == "complete" else f" ({m.status})"
        if m.stability is not None:
            status += (
                f" (stable after {m.stability.settled_after_s:g} s)"
                if m.stability.stable
                else " ⚠ never stable"
            )
        gen = _fmt(m.generator_cpu_max_pct)
        if m.generator_saturated:
            gen += " ⚠"
        rows.append(
            Row(
                [
                    entry.label + status,
                    _load(m.users, m.target_rps),
                    _fmt(m.requests),
                    _fmt(m.failures),
                    _rps(m),
                    _fmt(m.p50_ms),
                    _fmt(m.p95_ms),
                    _fmt(m.p99_ms),
                    _intended(m),
                    _fmt(m.server_queue_ms, 2),
                    _fmt(m.server_infer_ms, 2),
                    _fmt(m.cpu_cores_used, 2),
                    _fmt(m.host_busy_cores, 2),
                    _fmt(m.mem_mb, 0),
                    gen,
                    _fmt(m.interarrival_cv, 2),
                    _late(m),
                    "yes" if entry.slo_met else "no: " + "; ".join(entry.slo_reasons),
                ]
            )
        )
    return rows


FAULT_HEADER = [
    "Measurement",
    "Fault",
    "Target",
    "At s",
    "Without service s",
    "Ran again / load back s",
    "Failed (s with failures, worst /s)",
    f"Req/s ok before / worst {TIMELINE_WINDOW_S} s",
    f"p95 ms before / worst {TIMELINE_WINDOW_S} s",
    "Recovered after s (band)",
    "Replicas serving after",
    "Node Down / tasks elsewhere / Ready s",
]
NODE_EVENTS = ("node_down", "tasks_elsewhere", "node_ready")  # lab.stacks.swarm.NodeWatch's, in order


def _failed(f: FaultImpact) -> str:
    what = "arrivals" if f.failed_arrivals is not None else "requests"
    return f"{f.failures} {what} ({f.failed_seconds} s, {f.worst_failures_per_s}/s)"


def _recovered(f: FaultImpact) -> str:
    text = _fmt(f.recovery_s) if f.recovered else "not recovered"
    if not f.recovered and f.generator_stalled:
        text = "not judged: generator stalled"
    if f.band_min_rps is not None and f.band_max_p95_ms is not None:
        text += f" (≥ {_fmt(f.band_min_rps)} req/s, p95 ≤ {_fmt(f.band_max_p95_ms)} ms)"
    return text


def _back(f: FaultImpact) -> str:
    """A restarted target: when it ran again, from the fault, and then how long until the load was back."""
    if f.back_s is None:
        return "—"
    resumed = f"+{_fmt(f.resumed_s, 2)}" if f.resumed_s is not None else "not back"
    return f"{_fmt(f.back_s, 2)} / {resumed}"


def fault_rows(summary: Summary) -> list[Row]:
    rows = []
    for entry in summary.configs:
        for f in entry.metrics.faults:
            serving = (
                f"{f.replicas_serving_after} of {f.replicas_expected}"
                if f.replicas_serving_after is not None and f.replicas_expected is not None
                else "—"
            )
            rows.append(
                Row(
                    [
                        entry.label,
                        f.fault + ("" if f.applied else f" (not applied: {f.error})"),
                        f.target or "—",
                        _fmt(f.at_s),
                        _fmt(f.outage_s, 2),  # to the ms from the failures' times
                        _back(f),
                        _failed(f),
                        f"{_fmt(f.before_rps)} / {_fmt(f.worst_rps)}",
                        f"{_fmt(f.before_p95_ms)} / {_fmt(f.worst_p95_ms)}",
                        _recovered(f),
                        serving,
                        " / ".join(_fmt(f.node_events_s.get(e)) for e in NODE_EVENTS)
                        if f.node_events_s
                        else "—",
                    ]
                )
            )
    return rows


SOAK_HEADER = [
    "Measurement",
    "Replica",
    "RSS MB start → end",
    "RSS slope MB/min",
    "Open files start → end",
    "p95 ms first → last",
    "Flag",
]


def soak_rows(summary: Summary) -> list[Row]:
    rows = []
    for entry in summary.configs:
        soak = entry.metrics.soak
        if soak is None:
            continue
        p95 = f"{_fmt(soak.p95_first_ms)} → {_fmt(soak.p95_last_ms)} ({soak.edge_s} s each)"
        for r in soak.replicas or []:
            flag = ", ".join(
                what
                for what, grew in (("RSS", r.rss_grew), ("files", r.fds_grew), ("p95", soak.p95_grew))
                if grew
            )
            rows.append(
                Row(
                    [
                        entry.label,
                        r.container,
                        f"{r.rss_start_mb:.1f} → {r.rss_end_mb:.1f}",
                        f"{r.rss_slope_mb_per_min:+.2f}",
                        f"{r.fds_start} → {r.fds_end}",
                        p95,
                        f"grew > {SOAK_GROWTH_LIMIT:.0%}: {flag}" if flag else "—",
                    ]
                )
            )
    return rows


NODE_HEADER = ["Measurement", "Node", "CPU cores (mean)", "Containers sampled"]
NODE_NOTE = (
    "Each node's containers' summed CPU (docker stats through the node's own engine, --nodes), the mean "
    "over the measurement's samples, one measurement each: no interval. A node's engine and the rest of "
    "the machine are not in it; simulated nodes on one machine share its cores."
)


def node_rows(summary: Summary) -> list[Row]:
    """Per measurement, each node's CPU and what ran there (the swarm stack sampled through --nodes)."""
    rows = []
    for entry in summary.configs:
        m = entry.metrics
        for node, cores in m.cpu_by_node.items():
            services: dict[str, int] = {}
            for container, where in m.node_by_container.items():
                if where == node:
                    service = m.service_by_container.get(container, "?")
                    services[service] = services.get(service, 0) + 1
            held = ", ".join(f"{n} {s}" if n > 1 else s for s, n in sorted(services.items()))
            rows.append(Row([entry.label, node, _fmt(cores, 2), held or "—"]))
    return rows


def _budget_rows(summary: Summary) -> list[Row]:
    return [Row(cells) for cells in budget_rows([(c.label, c.metrics.cpu_budget) for c in summary.configs])]


def _capacity(summary: Summary, label: str) -> str:
    """Capacity, with its interval over runs when there are repeats."""
    value = summary.analysis.capacity.get(label)
    spread = summary.analysis.repeats
    interval = spread.capacity.get(label) if spread is not None else None
    if value is None or interval is None or not interval.has_interval:
        return _fmt(value)
    return interval.text()


REPEAT_HEADER = ["Config", "Runs", "Req/s mean (95% CI)", "p95 ms mean (95% CI)", "Never stable"]
COMPARISON_HEADER = ["Comparison", "Of", "Ratio of mean throughput (95% CI)"]
REPEAT_NOTE = (
    "Over runs (the run is the unit): the mean with a Student-t 95 % interval; a ratio's interval is the "
    "log-scale delta method with Welch's degrees of freedom. A ratio whose interval holds 1 is no "
    "measurable difference; one run has no interval. With --repeat the runs were measured in rounds."
)


def repeat_rows(summary: Summary) -> list[Row]:
    spread = summary.analysis.repeats
    if spread is None or not any(c.runs > 1 or c.unstable_runs for c in spread.configs):
        return []
    return [
        Row(
            [
                c.label,
                str(c.runs),
                c.rps.text(),
                c.p95_ms.text() if c.p95_ms is not None else "—",
                str(c.unstable_runs) if c.unstable_runs else "—",
            ]
        )
        for c in spread.configs
    ]


def comparison_rows(summary: Summary) -> list[Row]:
    spread = summary.analysis.repeats
    return [Row([f"{c.a} vs {c.b}", c.what, c.ratio.text()]) for c in (spread.comparisons if spread else [])]


PLAN_NOTE = (
    "A USL fit to each run's capacity (highest throughput within the failure limit) against replicas, "
    "bootstrapped over runs; p95 from a FIFO queue per replica at need / N with the service time measured "
    "at the lightest load, slowed by the fit's contention. Meets: at the band's pessimistic end. "
    "Model vs measured: the fitted curve at each measured count (held-out counts were not in the fit)."
)


def plan_sections(summary: Summary) -> list[tuple[str, str, list[str], list[Row]]]:
    """(title, words, header, rows) for each table of the plan."""
    plan = summary.plan
    if plan is None:
        return []
    out = []
    for g in plan.groups:
        words = " ".join(
            line.strip() + ("." if not line.rstrip().endswith(".") else "") for line in group_text(plan, g)
        )
        out.append(
            (
                f"Plan past what you measured: {g.group}",
                f"{words} {plan.budget_note[0].upper()}{plan.budget_note[1:]}.",
                PREDICTION_HEADER,
                [Row(r) for r in prediction_rows(g)],
            )
        )
        out.append((f"Model vs measured: {g.group}", "", MODEL_HEADER, [Row(r) for r in model_rows(g)]))
        if g.p95_checks:
            out.append(
                (f"p95 model vs measured: {g.group}", "", LATENCY_HEADER, [Row(r) for r in latency_rows(g)])
            )
    return out


def _md_table(header: list[str], rows: list[Row]) -> str:
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row.cells) + " |" for row in rows]
    return "\n".join(lines)


def _thresholds_text(t: Thresholds) -> str:
    parts = []
    if t.slo_p95_ms is not None:
        parts.append(f"p95 ≤ {t.slo_p95_ms:g} ms")
    parts.append(f"failures ≤ {t.max_failure_ratio:.1%}")
    if t.need_rps is not None:
        parts.append(f"serving ≥ {t.need_rps:g} req/s")
    return ", ".join(parts)


def _optional_md(title: str, header: list[str], rows: list[Row]) -> list[str]:
    return [f"### {title}", "", _md_table(header, rows), ""] if rows else []


def _optional_html(title: str, header: list[str], rows: list[Row], note: str) -> str:
    if not rows:
        return ""
    return f'<h2>{escape(title)}</h2>{_html_table(header, rows)}<p class="meta">{escape(note)}</p>'


def _stack_text(summary: Summary) -> str:
    if summary.nodes is None:
        return str(summary.stack or "unknown")
    return f"{summary.stack}, {summary.nodes} node" + ("s" if summary.nodes != 1 else "")


def prometheus_lines(summary: Summary) -> list[str]:
    """Whether each measurement's Prometheus series were recorded (the monitoring profile), and why not;
    nothing for a run from before prometheus.json existed."""
    notes = [(e.label, e.metrics.prometheus_series) for e in summary.configs if e.metrics.prometheus_series]
    if not notes:
        return []
    if len({n for _, n in notes}) == 1 and notes[0][1].startswith("not recorded"):
        return [f"Per-replica series (Prometheus): {notes[0][1]}."]
    return [f"Per-replica series (Prometheus), {label}: {note}." for label, note in notes]


def render_markdown(summary: Summary) -> str:
    return "\n".join(
        [
            f"## Load-test lab: run {summary.run_id}",
            "",
            f"SLO: {_thresholds_text(summary.thresholds)}. Stack: {_stack_text(summary)}. "
            f"Machine: {summary.host_cpus} cores. "
            f"Git: `{summary.git_sha or 'unknown'}`. Status: {summary.status}.",
            "",
            _md_table(capacity_header(summary), capacity_rows(summary)),
            "",
            _md_table(MEASUREMENT_HEADER, measurement_rows(summary)),
            "",
            *_optional_md("Repeats", REPEAT_HEADER, repeat_rows(summary)),
            *_optional_md("Comparisons", COMPARISON_HEADER, comparison_rows(summary)),
            *[
                line
                for title, words, header, rows in plan_sections(summary)
                for line in [*_optional_md(title, header, rows), *([words, ""] if words else [])]
            ],
            *([f"No plan: {summary.plan_error}.", ""] if summary.plan_error else []),
            *_optional_md("Faults", FAULT_HEADER, fault_rows(summary)),
            *_optional_md("Soak", SOAK_HEADER, soak_rows(summary)),
            *_optional_md("CPU per node", NODE_HEADER, node_rows(summary)),
            *_optional_md("CPU budget", BUDGET_HEADER, _budget_rows(summary)),
            *[line for text in prometheus_lines(summary) for line in (text, "")],
            f"**Verdict.** {summary.verdict}",
            "",
        ]
    )


def _html_table(header: list[str], rows: list[Row]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cls = ' class="recommended"' if row.recommended else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row.cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _raw_links(summary: Summary) -> str:
    items = []
    for entry in summary.configs:
        mdir = entry.metrics.dir
        base = entry.config_dir + ("/" + mdir if mdir != entry.config_dir else "")
        served = entry.metrics.served_by
        items.append(
            f'<li>{escape(entry.label)}: <a href="{escape(base)}/locust_report.html">Locust report</a>, '
            f'<a href="{escape(base)}/stats.csv">stats.csv</a>, '
            f'<a href="{escape(base)}/server_timing.json">server_timing.json</a>, '
            f'<a href="{escape(base)}/arrivals.json">arrivals.json</a>, '
            f'<a href="{escape(base)}/docker_stats.jsonl">docker_stats.jsonl</a>, '
            f'<a href="{escape(base)}/timeline.json">timeline.json</a>'
            + (f', <a href="{escape(base)}/faults.json">faults.json</a>' if entry.metrics.faults else "")
            + (f" — served by: {escape(json.dumps(served))}" if served else "")
            + "</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


FAULT_NOTE = (
    f"From timeline.json (every request per second, merged by the Locust master) and faults.json; one "
    "measurement each, no interval. Req/s and p95 are of the successful requests. Without service: from "
    "the first failure (or second without a successful answer) after the fault to the last, to the "
    f"millisecond, bad seconds joined while fewer than {TIMELINE_WINDOW_S} good ones part them. Failed: "
    "from the fault to the end, with the seconds that had a failure and the worst second; in the open model "
    "each is an arrival (a client), in the closed model users back off after a connection error, so the "
    "count does not measure the generator's speed. Ran again / load back (a restart): seconds from the "
    "fault until the container started again, then until the first whole second without a failure at the "
    "band's per-second load. Before: from the start to the fault. Worst: the worst "
    f"{TIMELINE_WINDOW_S}-second window from the fault on. Recovered: from the fault until a "
    f"{TIMELINE_WINDOW_S}-second window, and the rest of the measurement taken as one window, had successful "
    f"RPS within {RECOVERY_RPS_TOLERANCE:.0%} and p95 within {RECOVERY_P95_TOLERANCE:.0%} of the level "
    "before, or within the range its windows spanned before the fault, or (RPS) within the noise of its "
    f"seconds before the fault ({RECOVERY_CONFIDENCE:.0%} prediction interval, Student's t), whichever is "
    "widest (the band used is shown); windows in which no request started or "
    "ended while no request was in flight (or the master lost a worker) are a stalled generator, left out "
    "and named in the verdict. Replicas serving after: those whose X-Served-By count grew after the fault. "
    "Node Down / tasks elsewhere / Ready (node faults on a swarm): seconds from the fault until the manager "
    "marked the node Down, every task that ran there ran on other nodes, and the node was Ready again, "
    "polled through the manager every second (±1 s; — when not seen before the measurement ended)."
)
SOAK_NOTE = (
    "RSS and open files: every process of each replica, from the host's /proc (processes.jsonl); start and "
    "end are the first and last part of the window (the first and last minute, or a third each when shorter)."
)


def render_html(summary: Summary) -> str:
    charts = "".join(f"<h2>{escape(title)}</h2><figure>{svg}</figure>" for title, svg in all_charts(summary))
    status_class = "ok" if summary.status == "complete" else "bad"
    thresholds = escape(_thresholds_text(summary.thresholds))
    plan_html = "".join(
        _optional_html(title, header, rows, (words + " " if words else "") + PLAN_NOTE)
        for title, words, header, rows in plan_sections(summary)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Load-test lab: run {escape(str(summary.run_id))}</title>
<style>{CSS}</style></head>
<body>
<h1>How many replicas? Run {escape(str(summary.run_id))}</h1>
<p class="meta">Started {escape(str(summary.started_at))} · status
<span class="{status_class}">{escape(str(summary.status))}</span>
· git {escape(str(summary.git_sha))} · mode {escape(str(summary.mode))}
· stack {escape(_stack_text(summary))} · machine {summary.host_cpus} cores · SLO {thresholds}
</p>
<h2>Verdict</h2>
<p class="verdict">{escape(summary.verdict)}</p>
<h2>Capacity per configuration</h2>
{_html_table(capacity_header(summary), capacity_rows(summary))}
<p class="meta">Capacity: the highest throughput among load levels that met the SLO in every repeat.
Peak: the highest throughput within the failure limit, whatever the latency (used for scaling efficiency).
A quantized model (one whose image build checked it against the float model, as GET /model reported after
set-up): the ratio of its runs' peak throughput to the other backend's at the same replica count, with its
interval over runs, beside that check's top-1 agreement and mean |Δp| on the probe photos.</p>
<h2>Measurements</h2>
{_html_table(MEASUREMENT_HEADER, measurement_rows(summary))}
<p class="meta">Requests, req/s and latency percentiles are Locust's own Aggregated row (stats.csv),
over the measurement window after warm-up. Server times: the mean of the classifier's Server-Timing
stages, merged by the Locust master (server_timing.json). Classifier cores: the mean, over docker
stats samples, of the replicas' summed CPU; machine busy cores: the whole host, every process included.
Generator CPU: the busiest Locust worker (⚠ above {GENERATOR_CPU_LIMIT_PCT:.0f} %: the generator may
have been the limit). Arrival CV: of the gaps between request starts over the whole swarm (arrivals.json;
Poisson 1, evenly spaced 0). Late / dropped (open model): arrivals that found no user free, sent late or
not at all (⚠ above {LATE_ARRIVALS_SHARE:.0%} of them: too few users). From intended start (open
model): from each arrival's intended time to its answer (arrivals.json), the wait for a free user
included, which Locust's times from the send leave out; a dropped arrival counts at its lateness when
dropped (a lower bound). The SLO applies to it in the open model; the closed model has no intended time.
On a small machine the generator and the replicas share the cores: read the CPU chart before the
throughput.</p>
{_optional_html("Repeats", REPEAT_HEADER, repeat_rows(summary), REPEAT_NOTE)}
{_optional_html("Comparisons", COMPARISON_HEADER, comparison_rows(summary), REPEAT_NOTE)}
{plan_html}
{f'<p class="meta">No plan: {escape(summary.plan_error)}.</p>' if summary.plan_error else ""}
{_optional_html("Faults", FAULT_HEADER, fault_rows(summary), FAULT_NOTE)}
{_optional_html("Soak", SOAK_HEADER, soak_rows(summary), SOAK_NOTE)}
{_optional_html("CPU per node", NODE_HEADER, node_rows(summary), NODE_NOTE)}
{_optional_html("CPU budget", BUDGET_HEADER, _budget_rows(summary), BUDGET_NOTE)}
{"".join(f'<p class="meta">{escape(text)}</p>' for text in prometheus_lines(summary))}
{charts}
<h2>Raw files</h2>
{_raw_links(summary)}
</body></html>
"""


def write_report(run_dir: Path, thresholds: Thresholds | None = None) -> Summary:
    """Rebuild summary.json, summary.md and report.html in `run_dir`; return the summary."""
    summary = build_summary(run_dir, thresholds)
    (run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    (run_dir / "summary.md").write_text(render_markdown(summary), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(summary), encoding="utf-8")
    return summary
