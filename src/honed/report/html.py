"""report.html: one self-contained page rendered from an optimize report (no scripts, fonts or network images).

Sections: the verdict, the gate and data, a latency-vs-fidelity chart (inline SVG: every measured candidate,
the bound as a line, the Pareto front joined), the table of every candidate with why it was rejected, the
passes skipped and why, and the per-op time of the winner against the baseline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument
from honed.search.document import CandidateRow, CandidateStatus, OptimizeReport, ReportGate, ReportSettings

#: One colour for every candidate status (a test checks none is missing).
STATUS_COLOURS: dict[CandidateStatus, str] = {
    CandidateStatus.BASELINE: "#1f4e9c",
    CandidateStatus.ACCEPTED: "#1a7f37",
    CandidateStatus.REJECTED: "#c0392b",
    CandidateStatus.SLOWER: "#d68910",
    CandidateStatus.FAILED: "#7f8c8d",
    CandidateStatus.NOT_RUN: "#b0b0b0",
    CandidateStatus.PENDING: "#5d6d7e",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;
color:#1d232a;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde;padding-bottom:4px}
.sub{color:#566}.verdict{padding:12px 16px;border-radius:6px;margin:14px 0;font-size:15px}
.ok{background:#e6f4ea;border:1px solid #9bd3ae}.base{background:#fff4e0;border:1px solid #f0c36d}
table{border-collapse:collapse;width:100%;font-size:12.5px}th,td{padding:4px 6px;border-bottom:1px solid #e6e8eb;
text-align:left;vertical-align:top}th{background:#f5f7f9;position:sticky;top:0}td.n{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}tr.win td{background:#eef8f0;font-weight:600}
.pill{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:11px}
.kv td:first-child{color:#566;width:220px}.bar{height:10px;display:inline-block;vertical-align:middle}
.legend span{margin-right:14px;font-size:12px}.warn{color:#a15c00}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return _e(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if abs(float(value)) < 1e3 else f"{value:,.0f}"


def _size(value: Any) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(value)


def _pill(status: CandidateStatus) -> str:
    return f'<span class="pill" style="background:{STATUS_COLOURS[status]}">{_e(status.value)}</span>'


def _passes(row: CandidateRow) -> str:
    steps = row.passes
    if not steps:
        return "original"
    parts = []
    for s in steps:
        params = ", ".join(
            f"{k}={v if not isinstance(v, list) else f'[{len(v)} items]'}"
            for k, v in sorted(s["params"].items())
            if v != []
        )
        parts.append(f"<b>{_e(s['name'])}</b> <span class='sub'>{_e(params)}</span>")
    return "<br>".join(parts)


def _runtime(row: CandidateRow) -> str:
    rt = row.runtime
    bits = [_e(row.backend)]
    threads = rt.get("intra_op_threads") or (len(rt["affinity"]) if rt.get("affinity") else 0)
    bits.append(f"threads {threads or 'default'}")
    if rt.get("affinity"):
        bits.append("pinned " + ",".join(map(str, rt["affinity"])))
    if rt.get("spinning") is False:
        bits.append("no spin")
    for k, v in sorted((rt.get("options") or {}).items()):
        bits.append(f"{_e(k)}={_e(v)}")
    return "<br>".join(bits)


def _search_parts(report: OptimizeReport) -> tuple[ReportGate, ReportSettings, CandidateRow, CandidateRow]:
    if report.gate is None or report.settings is None or report.winner is None or report.baseline is None:
        raise InvalidArgument("a replay report has no search to render")
    return report.gate, report.settings, report.winner, report.baseline


def chart_svg(report: OptimizeReport, width: int = 760, height: int = 360) -> str:
    """Latency (x) against the gate metric (y) for every measured candidate, with the bound and Pareto front."""
    gate, settings, winner_row, _ = _search_parts(report)
    points = [(r, r.cost_ms, r.metric_value) for r in report.candidates]
    rows = [(r, float(x), float(y)) for r, x, y in points if x is not None and y is not None]
    if not rows:
        return "<p class='sub'>No candidate was both measured and evaluated.</p>"
    left, right, top, bottom = 70, 20, 20, 50
    xs = [x for _, x, _ in rows]
    ys = [y for _, _, y in rows]
    bound = gate.gate.min if gate.gate.min is not None else gate.gate.max
    y_values = ys + ([float(bound)] if bound is not None else [])
    x_lo, x_hi = 0.0, max(xs) * 1.08
    y_lo, y_hi = min(y_values), max(y_values)
    if bound is not None and y_hi > float(bound):
        # keep the region around the bound readable; far-off points are pinned to the bottom edge
        y_lo = max(y_lo, float(bound) - 4 * (y_hi - float(bound)))
    pad = (y_hi - y_lo) * 0.08 or 0.01
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo or 1) * (width - left - right)

    def py(y: float) -> float:
        return top + (y_hi - y) / (y_hi - y_lo or 1) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="latency against fidelity" style="background:#fff;border:1px solid #e1e4e8">'
    ]
    for i in range(6):
        xv = x_lo + (x_hi - x_lo) * i / 5
        yv = y_lo + (y_hi - y_lo) * i / 5
        parts.append(
            f'<line x1="{px(xv):.1f}" y1="{top}" x2="{px(xv):.1f}" y2="{height - bottom}" stroke="#f0f0f0"/>'
            f'<text x="{px(xv):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle">{xv:.3g}</text>'
            f'<line x1="{left}" y1="{py(yv):.1f}" x2="{width - right}" y2="{py(yv):.1f}" stroke="#f0f0f0"/>'
            f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" font-size="11" text-anchor="end">{yv:.4g}</text>'
        )
    objective = settings.objective
    xlabel = "p50 latency (ms)" if objective == "latency" else "mean latency (ms) = batch / throughput"
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 10}" font-size="12" text-anchor="middle">{xlabel}</text>'
        f'<text x="16" y="{(top + height - bottom) / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 16 {(top + height - bottom) / 2})">{_e(gate.metric)}</text>'
    )
    if bound is not None:
        y = py(float(bound))
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#c0392b" '
            f'stroke-dasharray="6 4"/><text x="{width - right - 4}" y="{y - 5:.1f}" font-size="11" '
            f'fill="#c0392b" text-anchor="end">bound {_e(gate.describe())}</text>'
        )
    front = set(report.pareto)
    front_pts = sorted((x, y) for r, x, y in rows if r.id in front)
    if len(front_pts) > 1:
        path = " ".join(f"{px(x):.1f},{py(max(y, y_lo)):.1f}" for x, y in front_pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#8e44ad" stroke-width="1.5"/>')
    winner = winner_row.id
    for r, cost, value in rows:
        x, y = px(cost), py(max(value, y_lo))
        if value < y_lo:
            parts.append(
                f'<text x="{x:.1f}" y="{y + 4:.1f}" font-size="13" text-anchor="middle" fill="#c0392b">▼</text>'
            )
        colour = STATUS_COLOURS[r.status]
        radius = 7 if r.id == winner else 4.5
        ring = ' stroke="#000" stroke-width="2"' if r.id == winner else ""
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" fill-opacity="0.85"{ring}>'
            f"<title>{_e(r.id)} {_e(r.label)}\n{_num(cost)} ms, {_e(gate.metric)} "
            f"{_num(value, 5)}</title></circle>"
            f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" font-size="10" fill="#444">{_e(r.id)}</text>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span><svg width="10" height="10"><circle cx="5" cy="5" r="5" fill="{c}"/></svg> {s.value}</span>'
        for s, c in STATUS_COLOURS.items()
        if s not in (CandidateStatus.NOT_RUN, CandidateStatus.PENDING)  # never measured, so never on the chart
    )
    legend += '<span style="color:#8e44ad">── Pareto front</span><span style="color:#c0392b">- - bound</span>'
    legend += '<span style="color:#c0392b">▼ far below the bound (value in the table)</span>'
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _table(report: OptimizeReport) -> str:
    gate, _, winner_row, _ = _search_parts(report)
    metric, winner = gate.metric, winner_row.id
    head = (
        "<tr><th>id</th><th>passes</th><th>runtime</th><th>status</th><th>p50 ms</th><th>p99 ms</th>"
        f"<th>items/s</th><th>speed-up</th><th>{_e(metric)}</th><th>cos min</th><th>size</th><th>why</th></tr>"
    )
    body = []
    for r in report.candidates:
        lat = r.latency_ms
        outputs = (r.fidelity or {}).get("outputs") or {}
        cos_min = min((float(o["cosine_min"]) for o in outputs.values() if "cosine_min" in o), default=None)
        why = " ".join(x for x in (r.reason, r.note) if x)
        if r.fidelity_from:
            why = (why + " " if why else "") + f"(fidelity of {r.fidelity_from}: same model)"
        if r.cached:
            why = (why + " " if why else "") + "[cached]"
        body.append(
            f'<tr class="{"win" if r.id == winner else ""}"><td>{_e(r.id)}</td><td>{_passes(r)}</td>'
            f"<td>{_runtime(r)}</td><td>{_pill(r.status)}</td><td class=n>{_num(lat.p50 if lat else None)}</td>"
            f"<td class=n>{_num(lat.p99 if lat else None)}</td><td class=n>{_num(r.throughput_items_per_s)}</td>"
            f"<td class=n>{_num(r.speedup)}{'x' if r.speedup else ''}</td>"
            f"<td class=n>{_num(r.metric_value, 5)}</td><td class=n>{_num(cos_min, 5)}</td>"
            f"<td class=n>{_size(r.size_bytes)}</td><td>{_e(why)}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _profile(report: OptimizeReport) -> str:
    profile = report.profile or {}
    base = {r["op"]: r for r in profile.get("baseline", [])}
    win = {r["op"]: r for r in profile.get("winner", [])}
    if not base and not win:
        return "<p class='sub'>No per-op profile (the backend cannot profile, or the budget was spent).</p>"
    ops = sorted(
        set(base) | set(win), key=lambda op: -max(base.get(op, {}).get("time_us", 0), win.get(op, {}).get("time_us", 0))
    )
    scale = max([float(r["time_us"]) for r in [*base.values(), *win.values()]] or [1.0])
    rows = []
    for op in ops[:25]:
        b = float(base.get(op, {}).get("time_us", 0.0))
        w = float(win.get(op, {}).get("time_us", 0.0))
        rows.append(
            f"<tr><td>{_e(op)}</td><td class=n>{b:,.1f}</td><td><span class='bar' style='background:#1f4e9c;"
            f"width:{200 * b / scale:.0f}px'></span></td><td class=n>{w:,.1f}</td><td><span class='bar' "
            f"style='background:#1a7f37;width:{200 * w / scale:.0f}px'></span></td></tr>"
        )
    totals = (
        f"<p class='sub'>Total per run: baseline {sum(float(r['time_us']) for r in base.values()):,.0f} µs, "
        f"winner {sum(float(r['time_us']) for r in win.values()):,.0f} µs "
        "(op time as the backend's profiler reports it; OpenVINO reports its own fused layer types).</p>"
    )
    head = "<tr><th>op type</th><th>baseline µs/run</th><th></th><th>winner µs/run</th><th></th></tr>"
    return totals + f"<table style='width:auto'>{head}{''.join(rows)}</table>"


def _closest(report: OptimizeReport) -> str:
    """For a run where nothing beat the original: how close each rejected candidate came to the bound."""
    closest = report.closest
    if report.improved or not closest:
        return ""
    metric = _e(_search_parts(report)[0].metric)
    rows = "".join(
        f"<tr><td>{_e(c.id)}</td><td>{_e(c.label)}</td><td class=n>{_num(c.metric_value, 5)}</td>"
        f"<td class=n>{_num(c.margin, 3)}</td><td class=n>{_num(c.speedup)}x</td></tr>"
        for c in closest
    )
    return (
        "<h2>How close the rejected candidates came</h2><table style='width:auto'><tr><th>id</th><th>candidate</th>"
        f"<th>{metric}</th><th>distance to the bound</th><th>speed-up</th></tr>{rows}</table>"
    )


def _hardware(hw: Mapping[str, Any]) -> str:
    """CPU, usable cores, ISA and FP32 peak: what decides which kernels and precisions pay off."""
    parts = [str(hw.get("cpu_model") or "unknown CPU")]
    cores = hw.get("usable_cores")
    if isinstance(cores, list | tuple):
        parts.append(f"{len(cores)} usable cores")
    if hw.get("isa"):
        parts.append("ISA " + " ".join(map(str, hw["isa"])))
    if hw.get("peak_fp32_gflops"):
        parts.append(f"peak FP32 ≈ {float(hw['peak_fp32_gflops']):.0f} GFLOP/s")
    return ", ".join(parts)


def render_html(report: OptimizeReport) -> str:
    """The whole page as one string."""
    gate, settings, winner, baseline = _search_parts(report)
    data, model = report.data or {}, report.model or {}
    if report.improved:
        verdict = (
            f"<div class='verdict ok'>Winner <b>{_e(winner.id)}</b>: {_e(winner.label)} — "
            f"<b>{_num(winner.speedup)}x</b> the original's {settings.objective} "
            f"({_num(winner.cost_ms)} ms vs {_num(baseline.cost_ms)} ms), {_e(gate.metric)} "
            f"{_num(winner.metric_value, 5)} ({_e(gate.describe())}).</div>"
        )
    else:
        verdict = (
            "<div class='verdict base'>No candidate beat the original model inside the accuracy bound "
            f"({_e(gate.describe())}); the original is kept (exit code 3).</div>"
        )
    warnings = []
    if data.get("synthetic"):
        warnings.append(
            "No --data was given: calibration and evaluation used synthetic inputs, so fidelity "
            "numbers say little about real inputs."
        )
    if data.get("eval_is_calibration"):
        warnings.append("No --eval-data was given: fidelity was judged on the calibration data.")
    if report.budget_exhausted:
        warnings.append("The time budget ran out; candidates marked not-run were never tried.")
    if not report.final_compared:
        warnings.append("No interleaved final comparison was made; the choice rests on single measurements.")
    warn_html = "".join(f"<p class='warn'>⚠ {_e(w)}</p>" for w in warnings)
    kv = [
        ("model", f"{model.get('path')} (sha256 {str(model.get('sha256'))[:16]}…)"),
        ("gate", f"{gate.describe()} — {gate.gate.reason}"),
        ("compared", gate.describe_mask()),
        *report.source_notes,
        ("batch / objective", f"{settings.batch} / {settings.objective}"),
        ("backends", ", ".join(settings.backends)),
        (
            "calibration data",
            f"{data['calibration']['source']} {data['calibration'].get('path') or ''} "
            f"({data['calibration']['samples_used']} samples used)",
        ),
        (
            "eval data",
            f"{data['eval']['source']} {data['eval'].get('path') or ''} ({data['eval']['samples_used']} samples)",
        ),
        ("time", f"{_num(report.elapsed_s)} s of a {settings.time_budget_s:g} s budget"),
        ("hardware", _hardware(report.hardware or {})),
    ]
    kv_html = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in kv)
    skipped = report.skipped
    skipped_html = (
        "<table><tr><th>pass</th><th>backend</th><th>why not tried</th></tr>"
        + "".join(
            f"<tr><td>{_e(s['pass'])}</td><td>{_e(s['backend'])}</td><td>{_e(s['reason'])}</td></tr>" for s in skipped
        )
        + "</table>"
        if skipped
        else "<p class='sub'>None.</p>"
    )
    untried_html = (
        f"<p>Stopped: {_e(report.stop_reason)}.</p>"
        + "<table><tr><th>move</th><th>why not made</th><th>detail</th></tr>"
        + "".join(
            f"<tr><td>{_e(u['what'])}</td><td>{_e(u['reason'])}</td><td>{_e(u['detail'])}</td></tr>"
            for u in report.untried
            if u.get("reason") != "not-applicable"
        )
        + "</table>"
        if report.stop_reason is not None
        else ""
    )
    name = _e(Path(str(model.get("path"))).name)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>honed optimize — {name}</title><style>{_CSS}</style></head><body>"
        f"<h1>honed optimize: {name}</h1>"
        f"<div class='sub'>honed {_e(report.honed_version)}, {_e(report.created)}</div>"
        f"{verdict}{warn_html}<table class='kv'>{kv_html}</table>"
        f"<h2>Latency against {_e(gate.metric)}</h2>{chart_svg(report)}"
        f"{_closest(report)}"
        f"<h2>Every candidate ({len(report.candidates)})</h2>{_table(report)}"
        f"<h2>Why the search stopped</h2>{untried_html}"
        f"<h2>Passes not tried</h2>{skipped_html}"
        f"<h2>Per-op time: winner vs baseline</h2>{_profile(report)}"
        "</body></html>\n"
    )


def write_html(report: OptimizeReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
