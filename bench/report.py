"""From a results JSON to the issue's ratios (with pass/fail), notes that explain the gaps, and Markdown.

Pure functions of the results dict: `python3 -m bench --report-only results.json` rebuilds the Markdown from a
saved file alone, and the tests feed them small hand-made results.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

Point = dict[str, Any]
Results = dict[str, Any]

# The issues' targets, as ratios (issue 9 raised service/bare from 0.8).
SERVICE_VS_BARE = 0.92
# LiteRT's service/baseline ratio (once 8x) and LiteRT/TF in the service (once 2.5x) are no longer targets
# (issue 18): the runtimes' own ratio bounds them, whatever the serving code does. They are shown, like the
# batching rows, so that FAIL in the table always names a target this project holds.
SERVICE_VS_BASELINE: dict[str, float | None] = {"tf": 3.0, "litert": None}
# int8 per-channel over float32, both LiteRT: the model call alone, one core, one thread (issue 24 measured
# 12.0 vs 5.6 ms per image, 2.1x, with XNNPACK + VNNI, inference only). Decode + infer is shown beside it,
# not judged: both pay the same decode, which no quantization can speed up (3 ms at 640x480, 6 ms at
# 1920x1080 on this VM), so 1.8x there would need the model call 2.3x and 3.6x faster on 2026-12-03's
# numbers: a target on the model measured on something else.
INT8_VS_FLOAT = 1.8
# LiteRT / TF in the service over the same ratio between the bare backends: the service keeps the lead.
LEAD_KEPT = 0.95
# Server CPU per request beyond the bare backend's decode + infer CPU per image (ms), at this concurrency.
OVERHEAD_MS = 1.2
OVERHEAD_LEVEL = 4
# A generator above this share of its core may be what limits a run.
GENERATOR_CPU_LIMIT = 50.0
# Other processes taking more than this share of the server's core make the run's absolute numbers suspect:
# `python3 -m bench --max-interference`'s default; a run records the value it used (interference_limit).
INTERFERENCE_LIMIT = 10.0
BACKEND_NAMES = {"tf": "TF SavedModel", "litert": "LiteRT float32", "litert-int8": "LiteRT int8"}
PATH_NAMES = {"nginx-keepalive": "nginx with upstream keep-alive (bench-only variant)"}
PATH_ORDER = {"direct": 0, "nginx": 1, "nginx-keepalive": 2}


def interference_limit(results: Results) -> float:
    """The run's own limit (its recorded method), for the notes and the † marks alike."""
    return float(results.get("method", {}).get("max_interference_percent", INTERFERENCE_LIMIT))


def select(points: Iterable[Point], **where: Any) -> list[Point]:
    return [p for p in points if all(p.get(k) == v for k, v in where.items())]


def peak(points: Iterable[Point], **where: Any) -> Point | None:
    """The point with the highest RPS among those matching `where`."""
    chosen = select(points, **where)
    return max(chosen, key=lambda p: p["rps"]) if chosen else None


def bare_rate(results: Results, label: str, image: str) -> float:
    for entry in results.get("bare", []):
        if entry["label"] == label and image in entry.get("images", {}):
            return float(entry["images"][image]["img_per_s"])
    return math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) and not math.isnan(a) else math.nan


def bare_cpu_ms(results: Results, label: str, image: str) -> float:
    """CPU ms per image of a bare loop: its wall time per image times its own CPU share, so that time other
    processes took from the core does not count."""
    entry = _bare_entry(results, label, image)
    if entry is None or not entry.get("img_per_s"):
        return math.nan
    return 1000.0 / float(entry["img_per_s"]) * float(entry.get("cpu_percent", 100.0)) / 100.0


def _check(
    name: str, value: float, target: float | None, detail: str, *, at_most: bool = False, **keys: Any
) -> dict[str, Any]:
    """`at_most`: the value passes at or below the target (a cost), otherwise at or above it (a ratio)."""
    if target is None or math.isnan(value):
        passed = None
    else:
        passed = bool(value <= target) if at_most else bool(value >= target)
    return {
        "name": name,
        "value": value,
        "target": target,
        "at_most": at_most,
        "passed": passed,
        "detail": detail,
        **keys,
    }


def compute_checks(results: Results) -> list[dict[str, Any]]:
    points: list[Point] = results.get("points", [])
    images: list[str] = list(results.get("images", {}))
    checks: list[dict[str, Any]] = []
    default = {"system": "service", "batch": 1}
    for image in images:
        int8_bare, float_bare = bare_rate(results, "litert-int8", image), bare_rate(results, "litert", image)
        int8_entry, float_entry = (
            _bare_entry(results, "litert-int8", image),
            _bare_entry(results, "litert", image),
        )
        if int8_entry is not None and float_entry is not None:
            int8_ms, float_ms = int8_entry["infer_ms"]["mean"], float_entry["infer_ms"]["mean"]
            checks.append(
                _check(
                    "int8/float32 inference",
                    _ratio(float_ms, int8_ms),
                    INT8_VS_FLOAT,
                    f"LiteRT model call {float_ms:.2f} ms float32 vs {int8_ms:.2f} ms int8 per image "
                    "(bare loop, mean, one core, one thread)",
                    kind="int8_vs_float",
                    image=image,
                )
            )
            checks.append(
                _check(
                    "int8/float32 bare decode + infer",
                    _ratio(int8_bare, float_bare),
                    None,
                    f"LiteRT int8 {int8_bare:.1f} vs float32 {float_bare:.1f} img/s; the same decode in both "
                    f"({int8_entry['decode_ms']['mean']:.1f} / {float_entry['decode_ms']['mean']:.1f} ms)",
                    kind="int8_vs_float_bare",
                    image=image,
                )
            )
        for backend in ("tf", "litert", "litert-int8"):
            bare = bare_rate(results, backend, image)
            for path in ("direct", "nginx"):
                best = peak(points, **default, backend=backend, path=path, image=image)
                if best is None:
                    continue
                checks.append(
                    _check(
                        f"service/bare {backend} {path}",
                        _ratio(best["rps"], bare),
                        SERVICE_VS_BARE,
                        f"{best['rps']:.1f} RPS at c={best['concurrency']} on 1 core "
                        f"vs bare {bare:.1f} img/s",
                        kind="service_vs_bare",
                        backend=backend,
                        path=path,
                        image=image,
                    )
                )
        base = peak(points, system="baseline", image=image)
        for backend in ("tf", "litert"):
            best = peak(points, **default, backend=backend, path="direct", image=image)
            if best is None or base is None:
                continue
            worse = [
                p["concurrency"]
                for p in select(points, **default, backend=backend, path="direct", image=image)
                for b in select(points, system="baseline", image=image, concurrency=p["concurrency"])
                if not p["latency_ms"]["p95"] < b["latency_ms"]["p95"]
            ]
            check = _check(
                f"service/baseline {backend}",
                _ratio(best["rps"], base["rps"]),
                SERVICE_VS_BASELINE[backend],
                f"{best['rps']:.1f} vs {base['rps']:.1f} RPS (peaks); p95 "
                + ("lower at every concurrency" if not worse else f"NOT lower at c={worse}"),
                kind="service_vs_baseline",
                backend=backend,
                image=image,
            )
            if worse and check["passed"]:  # a shown ratio (no target) stays shown
                check["passed"] = False
            checks.append(check)
        tf_best = peak(points, **default, backend="tf", path="direct", image=image)
        lite_best = peak(points, **default, backend="litert", path="direct", image=image)
        bare_ratio = _ratio(bare_rate(results, "litert", image), bare_rate(results, "tf", image))
        if tf_best and lite_best:
            checks.append(
                _check(
                    "litert/tf service",
                    _ratio(lite_best["rps"], tf_best["rps"]),
                    None,
                    f"{lite_best['rps']:.1f} vs {tf_best['rps']:.1f} RPS; bare backends {bare_ratio:.2f}x",
                    kind="litert_vs_tf",
                    image=image,
                )
            )
        tf_nginx = peak(points, **default, backend="tf", path="nginx", image=image)
        lite_nginx = peak(points, **default, backend="litert", path="nginx", image=image)
        if tf_nginx and lite_nginx:
            service_ratio = _ratio(lite_nginx["rps"], tf_nginx["rps"])
            checks.append(
                _check(
                    "litert/tf nginx vs bare",
                    _ratio(service_ratio, bare_ratio),
                    LEAD_KEPT,
                    f"LiteRT/TF {service_ratio:.2f}x through nginx ({lite_nginx['rps']:.1f} vs "
                    f"{tf_nginx['rps']:.1f} RPS) against {bare_ratio:.2f}x bare",
                    kind="lead_kept",
                    image=image,
                )
            )
        for backend in ("tf", "litert"):
            bare_ms = bare_cpu_ms(results, backend, image)
            for path in ("direct", "nginx"):
                found = select(points, **default, backend=backend, path=path, image=image)
                at_level = [p for p in found if p["concurrency"] == OVERHEAD_LEVEL]
                if not at_level:
                    continue
                per_request = core_ms_per_request(at_level[0])
                checks.append(
                    _check(
                        f"CPU ms/request outside decode + infer {backend} {path} c={OVERHEAD_LEVEL}",
                        per_request - bare_ms,
                        OVERHEAD_MS,
                        f"server {per_request:.2f} ms of CPU per request vs bare {bare_ms:.2f} ms per image",
                        at_most=True,
                        kind="overhead",
                        backend=backend,
                        path=path,
                        image=image,
                    )
                )
        for backend in ("tf", "litert"):
            for on in select(points, system="service", backend=backend, path="direct", image=image):
                if on["batch"] == 1:
                    continue
                off = select(
                    points,
                    **default,
                    backend=backend,
                    path="direct",
                    image=image,
                    concurrency=on["concurrency"],
                )
                if not off:
                    continue
                p95_on, p95_off = on["latency_ms"]["p95"], off[0]["latency_ms"]["p95"]
                checks.append(
                    _check(
                        f"batching {on['batch']} vs off {backend} c={on['concurrency']}",
                        _ratio(on["rps"], off[0]["rps"]),
                        None,
                        f"RPS {on['rps']:.1f} vs {off[0]['rps']:.1f}; p95 {p95_on:.0f} vs {p95_off:.0f} ms; "
                        f"mean batch {on.get('mean_batch_size') or 0:.1f}",
                        kind="batching",
                        backend=backend,
                        image=image,
                    )
                )
    return checks


def _stage_mean(point: Point, stage: str) -> float:
    return float(point.get("server_timing_ms", {}).get(stage, {}).get("mean", math.nan))


def core_ms_per_request(point: Point) -> float:
    """Server CPU spent per answered request (ms of core time), from the server's own CPU counters."""
    return _ratio(point.get("server_cpu_percent", math.nan) * 10.0, point["rps"])


def derive_notes(results: Results) -> list[str]:
    """Why a target was missed, in numbers the run itself measured (Server-Timing, CPU counters)."""
    notes: list[str] = []
    points: list[Point] = results.get("points", [])
    limit = interference_limit(results)
    for check in compute_checks(results):
        # A missed target is explained; so are the shown LiteRT/TF and int8 decode + infer ratios (the latter
        # with the int8 model call's), from the runtimes' own.
        if check["passed"] is not False and check["kind"] not in ("litert_vs_tf", "int8_vs_float_bare"):
            continue
        image = check["image"]
        if check["kind"] == "service_vs_bare":
            point = peak(
                points, system="service", batch=1, backend=check["backend"], path=check["path"], image=image
            )
            bare = _bare_entry(results, check["backend"], image)
            if point is None or bare is None:
                continue
            decode, infer = _stage_mean(point, "decode"), _stage_mean(point, "infer")
            per_request = core_ms_per_request(point)
            bare_ms = 1000.0 / bare["img_per_s"]
            busy = point.get("core_busy_percent", {}).get("server", math.nan)
            notes.append(
                f"{image}, {check['backend']} {check['path']}: {check['value']:.2f}x of bare (target "
                f"{SERVICE_VS_BARE}). At the peak (c={point['concurrency']}) the server used "
                f"{per_request:.1f} ms of core per request against {bare_ms:.1f} ms per image bare "
                f"(bare decode {bare['decode_ms']['mean']:.1f} + infer {bare['infer_ms']['mean']:.1f} ms); "
                f"Server-Timing inside the service: decode {decode:.1f}, infer {infer:.1f} ms (wall, "
                f"includes waiting for the shared core). Serving overhead (HTTP, multipart, event loop, "
                f"thread hand-offs, metrics): about {per_request - bare_ms:.1f} ms per request. Server core "
                f"busy {busy:.0f}%, of which the server {point.get('server_cpu_percent', math.nan):.0f}%."
                + (
                    f" Other processes took {_interference(point):.0f}% of the server's core at that level, "
                    "which alone lowers its RPS by about as much."
                    if _interference(point) > limit
                    else ""
                )
            )
        elif check["kind"] == "service_vs_baseline":
            base = peak(points, system="baseline", image=image)
            best = peak(
                points, system="service", batch=1, backend=check["backend"], path="direct", image=image
            )
            if base is None or best is None:
                continue
            notes.append(
                f"{image}, service {check['backend']} vs baseline: {check['value']:.2f}x (target "
                f"{SERVICE_VS_BASELINE[check['backend']]}x). Baseline {base['rps']:.1f} RPS = "
                f"{core_ms_per_request(base):.1f} ms of core per request (Keras predict() per call); service "
                f"{best['rps']:.1f} RPS = {core_ms_per_request(best):.1f} ms. {check['detail']}."
            )
        elif check["kind"] == "litert_vs_tf":
            tf_bare, lite_bare = _bare_entry(results, "tf", image), _bare_entry(results, "litert", image)
            if tf_bare is None or lite_bare is None:
                continue
            tf_infer, lite_infer = tf_bare["infer_ms"]["mean"], lite_bare["infer_ms"]["mean"]
            shared = (tf_bare["decode_ms"]["mean"] + lite_bare["decode_ms"]["mean"]) / 2
            infer_ratio = _ratio(tf_infer, lite_infer)
            notes.append(
                f"{image}: LiteRT/TF {check['value']:.2f}x in the service. The runtimes alone, one thread, "
                f"bare: infer {tf_infer:.1f} ms (TF) vs {lite_infer:.1f} ms (LiteRT) = {infer_ratio:.2f}x. "
                f"The decode both pay ({shared:.1f} ms) and the HTTP work per request add the same time to "
                "both, so the service's ratio stays below the runtimes' own"
                + (" (measured above it here: noise between runs)" if check["value"] > infer_ratio else "")
                + "."
            )
        elif check["kind"] == "int8_vs_float_bare":  # one note for both int8 rows
            notes.append(int8_note(results, image, check["value"]))
    notes += baseline_notes(results)
    notes += nginx_notes(results)
    notes += interference_notes(results)
    busiest = max(points, key=lambda p: p.get("generator_cpu_percent", 0.0), default=None)
    if busiest is not None:
        share = busiest.get("generator_cpu_percent", math.nan)
        verdict = "well under its core" if share < GENERATOR_CPU_LIMIT else "HIGH: it may limit these runs"
        notes.append(
            f"Load generator: at most {share:.0f}% of its core (at {busiest['rps']:.0f} RPS, "
            f"{busiest['system']} {busiest.get('backend') or ''} {busiest.get('path')} "
            f"c={busiest['concurrency']}): {verdict}."
        )
    return notes


def int8_note(results: Results, image: str, whole: float) -> str:
    """What int8 bought: the model call's ratio (the target's), what is left of it in decode + infer
    (`whole`, the bare img/s ratio), and the model call speed-up decode + infer would need for the target."""
    int8, flt = _bare_entry(results, "litert-int8", image), _bare_entry(results, "litert", image)
    assert int8 is not None and flt is not None
    infer_int8, infer_float = int8["infer_ms"]["mean"], flt["infer_ms"]["mean"]
    decode_int8, decode_float = int8["decode_ms"]["mean"], flt["decode_ms"]["mean"]
    # The time int8's model call may take, after its own decode, for decode + infer at the target.
    room = (decode_float + infer_float) / INT8_VS_FLOAT - decode_int8
    needed = (
        f"a {infer_float / room:.2f}x faster model call" if room > 0 else "more than an instant model call"
    )
    return (
        f"{image}: int8/float32, bare loop, one thread: model call {infer_float:.2f} ms float32 vs "
        f"{infer_int8:.2f} ms int8 = {_ratio(infer_float, infer_int8):.2f}x (target {INT8_VS_FLOAT}x); the "
        f"decode both pay ({decode_float:.1f} / {decode_int8:.1f} ms) leaves {whole:.2f}x of decode + infer "
        f"(shown); {INT8_VS_FLOAT}x there would take {needed}."
    )


def baseline_notes(results: Results) -> list[str]:
    """Where the tutorial-style server's time goes, from its own loop without HTTP (bare `tutorial`)."""
    notes = []
    for image in results.get("images", {}):
        tutorial, tf_bare = _bare_entry(results, "tutorial", image), _bare_entry(results, "tf", image)
        if tutorial is None:
            continue
        decode, predict = tutorial["decode_ms"]["mean"], tutorial["infer_ms"]["mean"]
        call = tutorial.get("keras_call_ms", {}).get("mean", math.nan)
        text = (
            f"{image}, why the baseline is slow (its own loop, no HTTP, {tutorial['img_per_s']:.1f} img/s): "
            f"PIL decode at full size {decode:.1f} ms + model.predict() {predict:.1f} ms per request, where "
            f"calling the same Keras model directly takes {call:.1f} ms: predict() sets up its data pipeline "
            f"on every call (about {predict - call:.0f} ms)"
        )
        if tf_bare is not None:
            text += (
                f". The service decodes in draft mode ({tf_bare['decode_ms']['mean']:.1f} ms) and calls the "
                f"SavedModel's function ({tf_bare['infer_ms']['mean']:.1f} ms, TF)"
            )
        text += f". The loop used {tutorial['cpu_percent']:.0f}% of its core: predict() also waits."
        notes.append(text)
    return notes


def nginx_notes(results: Results) -> list[str]:
    """The stack's nginx (no upstream keep-alive) against direct and against the keep-alive variant."""
    notes = []
    points: list[Point] = results.get("points", [])
    for image in results.get("images", {}):
        for variant in select(points, system="service", batch=1, path="nginx-keepalive", image=image):
            keys = {"system": "service", "batch": 1, "backend": variant["backend"], "image": image}
            level = variant["concurrency"]
            direct = select(points, **keys, path="direct", concurrency=level)
            stack = select(points, **keys, path="nginx", concurrency=level)
            if not direct or not stack:
                continue
            d, n, v = direct[0], stack[0], variant
            cpu = " / ".join(f"{core_ms_per_request(p):.1f}" for p in (d, n, v))
            notes.append(
                f"{image}, {v['backend']} c={level}: direct {d['rps']:.1f} RPS, through the stack's nginx "
                f"{n['rps']:.1f} ({_percent_change(n['rps'], d['rps'])}), through the keep-alive variant "
                f"{v['rps']:.1f} ({_percent_change(v['rps'], d['rps'])}); the server's CPU per request "
                f"{cpu} ms."
            )
    return notes


def _percent_change(value: float, reference: float) -> str:
    change = _ratio(value - reference, reference) * 100.0
    return "-" if math.isnan(change) else f"{change:+.0f}%"


def interference_notes(results: Results) -> list[str]:
    """How much of the server's core other processes took: a busy machine lowers every number here."""
    shares = [p["interference_percent"] for p in results.get("points", []) if "interference_percent" in p]
    bare = [
        m["interference_percent"]
        for entry in results.get("bare", [])
        for m in entry.get("images", {}).values()
        if "interference_percent" in m
    ]
    if not shares and not bare:
        return []
    worst = max(shares + bare)
    median = statistics.median(shares) if shares else math.nan
    text = (
        f"Other processes on the server core (CPU not used by the measured process): bare loops up to "
        f"{max(bare, default=math.nan):.0f}%, HTTP levels median {median:.0f}% and up to "
        f"{max(shares, default=math.nan):.0f}%."
    )
    if worst > interference_limit(results):
        text += (
            " That is enough to move results by as much: compare ratios measured close together, and rerun "
            "on a quiet machine for absolute numbers."
        )
    return [text]


def _interference(measurement: dict[str, Any]) -> float:
    value = measurement.get("interference_percent")
    return 0.0 if value is None or math.isnan(value) else float(value)


def _bare_entry(results: Results, label: str, image: str) -> dict[str, Any] | None:
    for entry in results.get("bare", []):
        if entry["label"] == label:
            return entry.get("images", {}).get(image)
    return None


# --- Markdown ---


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _verdict(check: dict[str, Any]) -> str:
    if check["passed"] is None:
        return "shown" if check["target"] is None else "no data"
    return "PASS" if check["passed"] else "FAIL"


def _config_label(point: Point) -> str:
    if point["system"] == "baseline":
        return "baseline (tutorial-style, Keras predict)"
    batching = (
        "batching off" if point["batch"] == 1 else f"batch ≤{point['batch']}, {point['batch_delay_ms']:g} ms"
    )
    path = PATH_NAMES.get(point["path"], point["path"])
    return f"service {BACKEND_NAMES.get(point['backend'], point['backend'])}, {path}, {batching}"


def _config_order(point: Point) -> tuple[int, str, int, int]:
    return (
        0 if point["system"] == "service" else 1,
        point.get("backend") or "",
        point.get("batch", 1),
        PATH_ORDER.get(point.get("path", ""), 3),
    )


DISTURBED = "†"


def _mark(measurement: dict[str, Any], limit: float) -> str:
    """A dagger on a number taken while other processes took more than `limit` % of its core."""
    others = measurement.get("interference_percent")
    return DISTURBED if others is not None and others > limit else ""


def render_markdown(results: Results) -> str:
    points: list[Point] = results.get("points", [])
    images: dict[str, Any] = results.get("images", {})
    levels = sorted({p["concurrency"] for p in points})
    host = results.get("host", {})
    method = results.get("method", {})
    limit = interference_limit(results)
    marked = False
    out: list[str] = [
        f"## Benchmark ({results.get('started_at', '?')[:10]}, `python3 -m bench"
        f"{' --quick' if method.get('quick') else ''}`)",
        "",
        f"{host.get('cpu_model', '?')}, {host.get('cpus', '?')} cores; load average before "
        f"{_loads(host.get('load_avg_before'))}, after {_loads(host.get('load_avg_after'))}. "
        f"{results.get('model', {}).get('note', '')}",
        "",
    ]
    out += [f"- {line}" for line in method.get("description", [])]
    out += ["", "### Bare backend: decode + infer, one core, one thread (img/s per core)", ""]
    names = list(images)
    header = (
        "| backend | "
        + " | ".join(f"{_image_label(images, n)} img/s (decode + infer ms)" for n in names)
        + " |"
    )
    out += [header, "|---|" + "---:|" * len(names)]
    for entry in results.get("bare", []):
        cells = []
        for name in names:
            m = entry.get("images", {}).get(name)
            cells.append(
                f"**{_fmt(m['img_per_s'])}**{_mark(m, limit)} ({_fmt(m['decode_ms']['mean'])} + "
                f"{_fmt(m['infer_ms']['mean'])})"
                if m
                else "-"
            )
            marked = marked or bool(m and _mark(m, limit))
        out.append(f"| {entry['title']} | " + " | ".join(cells) + " |")
    for name in names:
        out += [
            "",
            f"### Over HTTP, {_image_label(images, name)}: RPS and p50 / p95 / p99 ms by concurrency",
            "",
            "| configuration | " + " | ".join(f"c={c}" for c in levels) + " |",
            "|---|" + "---:|" * len(levels),
        ]
        configs: dict[str, list[Point]] = {}
        for point in sorted(select(points, image=name), key=_config_order):
            configs.setdefault(_config_label(point), []).append(point)
        for label, group in configs.items():
            by_level = {p["concurrency"]: p for p in group}
            cells = []
            for c in levels:
                p = by_level.get(c)
                if p is None:
                    cells.append("")
                    continue
                lat = p["latency_ms"]
                errors = f", **{p['errors']} err**" if p["errors"] else ""
                cells.append(
                    f"**{_fmt(p['rps'])}**{_mark(p, limit)} ({_fmt(lat['p50'], 0)} / {_fmt(lat['p95'], 0)} / "
                    f"{_fmt(lat['p99'], 0)}){errors}"
                )
                marked = marked or bool(_mark(p, limit))
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    if marked:
        out += [
            "",
            f"{DISTURBED} other processes took more than {limit:g}% of the measured core even after "
            f"{method.get('retries_per_measurement', 0)} repeats: lower than on a quiet machine.",
        ]
    checks = results.get("checks") or compute_checks(results)
    out += [
        "",
        "### Targets",
        "",
        "| image | ratio | measured | target | result | detail |",
        "|---|---|---:|---:|---|---|",
    ]
    for check in checks:
        # Costs (ms) pass at or below their target, ratios (x) at or above.
        unit = " ms" if check.get("at_most") else "x"
        target = (
            f"{'≤' if check.get('at_most') else '≥'} {check['target']:g}{unit}"
            if check["target"] is not None
            else "-"
        )
        # 0.918 printed as "0.92" next to "≥ 0.92" and FAIL reads as a contradiction: show the third digit.
        hidden = check["passed"] is False and round(check["value"], 2) == check["target"]
        value = _fmt(check["value"], 3 if hidden else 2)
        out.append(
            f"| {_image_label(images, check['image'])} | {check['name']} | "
            f"{value}{unit if value != '-' else ''} | {target} | {_verdict(check)} | {check['detail']} |"
        )
    notes = results.get("notes") or []
    if notes:
        out += ["", "### Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def _loads(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "?"


def _image_label(images: dict[str, Any], name: str) -> str:
    info = images.get(name) or {}
    return f"{info.get('width', '?')}x{info.get('height', '?')} JPEG" if info else name
