"""`lab report`: summary.json, summary.md and report.html of a run, rebuilt from its raw files alone."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from lab.charts import all_charts
from lab.summary import Thresholds, build_summary

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


def _load(entry: dict[str, Any]) -> str:
    if entry.get("target_rps"):
        return f"{entry['target_rps']:g} req/s ({entry['users']} users)"
    return f"{entry.get('users')} users"


def _rps(entry: dict[str, Any]) -> str:
    text = _fmt(entry.get("rps"))
    if entry.get("achieved_ratio") is not None:
        text += f" ({entry['achieved_ratio']:.0%} of target)"
    return text


def capacity_rows(summary: dict[str, Any]) -> list[list[str]]:
    first: dict[str, dict[str, Any]] = {}
    for entry in summary["configs"]:
        first.setdefault(entry["stack_label"], entry)
    recommended = (summary.get("recommended") or {}).get("label")
    rows = []
    for label, entry in first.items():
        eff = summary["scaling_efficiency"].get(label, {}).get("efficiency")
        knee = summary["knee"].get(label)
        rows.append(
            [
                ("★ " if label == recommended else "") + label,
                str(entry["replicas"]),
                _fmt(entry.get("workers_per_replica")),
                _fmt(entry.get("backend")),
                _fmt(entry.get("batching")),
                _fmt(summary["capacity"].get(label)),
                _load(knee) if knee else "—",
                _fmt(summary["peak_rps"].get(label)),
                f"{eff:.0%}" if eff is not None else "—",
            ]
        )
    return rows


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

MEASUREMENT_HEADER = [
    "Measurement",
    "Load",
    "Requests",
    "Failures",
    "Req/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "Queue ms",
    "Infer ms",
    "Classifier cores",
    "Machine busy cores",
    "Mem MB",
    "Generator CPU max %",
    "SLO met",
]


def measurement_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for entry in summary["configs"]:
        status = "" if entry.get("status") == "complete" else f" ({entry.get('status')})"
        gen = _fmt(entry.get("generator_cpu_max_pct"))
        if entry.get("generator_saturated"):
            gen += " ⚠"
        rows.append(
            [
                entry["label"] + status,
                _load(entry),
                _fmt(entry.get("requests")),
                _fmt(entry.get("failures")),
                _rps(entry),
                _fmt(entry.get("p50_ms")),
                _fmt(entry.get("p95_ms")),
                _fmt(entry.get("p99_ms")),
                _fmt(entry.get("server_queue_ms"), 2),
                _fmt(entry.get("server_infer_ms"), 2),
                _fmt(entry.get("cpu_cores_used"), 2),
                _fmt(entry.get("host_busy_cores"), 2),
                _fmt(entry.get("mem_mb"), 0),
                gen,
                "yes" if entry["slo_met"] else "no: " + "; ".join(entry["slo_reasons"]),
            ]
        )
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _thresholds_text(summary: dict[str, Any]) -> str:
    t = summary["thresholds"]
    parts = []
    if t.get("slo_p95_ms") is not None:
        parts.append(f"p95 ≤ {t['slo_p95_ms']:g} ms")
    parts.append(f"failures ≤ {t['max_failure_ratio']:.1%}")
    if t.get("need_rps") is not None:
        parts.append(f"serving ≥ {t['need_rps']:g} req/s")
    return ", ".join(parts)


def render_markdown(summary: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"## Load-test lab: run {summary['run_id']}",
            "",
            f"SLO: {_thresholds_text(summary)}. Machine: {summary['host_cpus']} cores. "
            f"Git: `{summary.get('git_sha') or 'unknown'}`. Status: {summary.get('status')}.",
            "",
            _md_table(CAPACITY_HEADER, capacity_rows(summary)),
            "",
            _md_table(MEASUREMENT_HEADER, measurement_rows(summary)),
            "",
            f"**Verdict.** {summary['verdict']}",
            "",
        ]
    )


def _html_table(header: list[str], rows: list[list[str]], highlight_prefix: str = "★") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cls = ' class="recommended"' if row[0].startswith(highlight_prefix) else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _raw_links(summary: dict[str, Any]) -> str:
    items = []
    for entry in summary["configs"]:
        base = entry["config_dir"] + ("/" + entry["dir"] if entry["dir"] != entry["config_dir"] else "")
        items.append(
            f'<li>{escape(entry["label"])}: <a href="{escape(base)}/locust_report.html">Locust report</a>, '
            f'<a href="{escape(base)}/stats.csv">stats.csv</a>, '
            f'<a href="{escape(base)}/docker_stats.jsonl">docker_stats.jsonl</a>'
            + (f" — served by: {escape(json.dumps(entry['served_by']))}" if entry.get("served_by") else "")
            + "</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def render_html(summary: dict[str, Any]) -> str:
    charts = "".join(f"<h2>{escape(title)}</h2><figure>{svg}</figure>" for title, svg in all_charts(summary))
    settings = summary.get("settings") or {}
    status_class = "ok" if summary.get("status") == "complete" else "bad"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Load-test lab: run {escape(str(summary["run_id"]))}</title>
<style>{CSS}</style></head>
<body>
<h1>How many replicas? Run {escape(str(summary["run_id"]))}</h1>
<p class="meta">Started {escape(str(summary.get("started_at")))} · status
<span class="{status_class}">{escape(str(summary.get("status")))}</span>
· git {escape(str(summary.get("git_sha")))} · mode {escape(str(settings.get("mode", "")))}
· machine {summary["host_cpus"]} cores · SLO {escape(_thresholds_text(summary))}
</p>
<h2>Verdict</h2>
<p class="verdict">{escape(summary["verdict"])}</p>
<h2>Capacity per configuration</h2>
{_html_table(CAPACITY_HEADER, capacity_rows(summary))}
<p class="meta">Capacity: the highest throughput among load levels that met the SLO in every repeat.
Peak: the highest throughput within the failure limit, whatever the latency (used for scaling efficiency).</p>
<h2>Measurements</h2>
{_html_table(MEASUREMENT_HEADER, measurement_rows(summary))}
<p class="meta">Latency percentiles are Locust's, over the measurement window after warm-up.
Server times come from the classifier's Server-Timing header. Classifier cores: the mean, over docker
stats samples, of the replicas' summed CPU; machine busy cores: the whole host, every process included.
Generator CPU: the busiest Locust worker (⚠ above 90 %: the generator may have been the limit).
On a small machine the generator and the replicas share the cores: read the CPU chart before the
throughput.</p>
{charts}
<h2>Raw files</h2>
{_raw_links(summary)}
</body></html>
"""


def write_report(run_dir: Path, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Rebuild summary.json, summary.md and report.html in `run_dir`; return the summary."""
    summary = build_summary(run_dir, thresholds)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (run_dir / "summary.md").write_text(render_markdown(summary), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(summary), encoding="utf-8")
    return summary
