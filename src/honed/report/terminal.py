"""The terminal view of an optimize report: one rich table of every candidate and a verdict line."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from honed.errors import InvalidArgument
from honed.search.document import CandidateRow, CandidateStatus, OptimizeReport, ReportGate

#: One style for every candidate status (a test checks none is missing).
STATUS_STYLES: dict[CandidateStatus, str] = {
    CandidateStatus.BASELINE: "blue",
    CandidateStatus.ACCEPTED: "green",
    CandidateStatus.REJECTED: "red",
    CandidateStatus.SLOWER: "yellow",
    CandidateStatus.FAILED: "bright_black",
    CandidateStatus.NOT_RUN: "dim",
    CandidateStatus.PENDING: "magenta",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{float(value):.{digits}g}"


def _parts(report: OptimizeReport) -> tuple[ReportGate, CandidateRow]:
    if report.gate is None or report.winner is None:
        raise InvalidArgument("a replay report has no candidates to show")
    return report.gate, report.winner


def candidates_table(report: OptimizeReport) -> Table:
    """Every candidate with status, latency, speed-up, the gate metric and why it was rejected."""
    gate, winner = _parts(report)
    notes = [*([gate.describe_mask()] if gate.mask is not None else []), *(n for _, n in report.source_notes)]
    table = Table(
        title=f"honed optimize — gate: {gate.describe()}",
        title_justify="left",
        caption=Text("\n".join(notes)) if notes else None,
        caption_justify="left",
    )
    table.add_column("id", no_wrap=True)
    table.add_column("candidate", min_width=24, ratio=3)
    table.add_column("status", no_wrap=True)
    table.add_column("p50 ms", justify="right", no_wrap=True)
    table.add_column("p99 ms", justify="right", no_wrap=True)
    table.add_column("speed-up", justify="right", no_wrap=True)
    table.add_column(gate.metric, justify="right", no_wrap=True)
    table.add_column("why", ratio=2, overflow="ellipsis", max_width=60)
    for row in report.candidates:
        lat = row.latency_ms
        why = " ".join(x for x in (row.reason, row.note) if x)
        table.add_row(
            ("★ " if row.id == winner.id else "") + row.id,
            Text(row.label),  # labels hold brackets ([int8+bf16]) that rich would read as markup
            Text(row.status.value, style=STATUS_STYLES[row.status]),
            _fmt(lat.p50 if lat else None),
            _fmt(lat.p99 if lat else None),
            (_fmt(row.speedup) + "x") if row.speedup else "–",
            _fmt(row.metric_value, 5),
            why,
        )
    return table


def verdict(report: OptimizeReport) -> str:
    """One line: what was chosen and by how much."""
    gate, winner = _parts(report)
    if report.improved:
        return (
            f"winner {winner.id}: {winner.label} — {_fmt(winner.speedup)}x faster, "
            f"{gate.metric} {_fmt(winner.metric_value, 5)}"
        )
    return f"no candidate beat the original inside {gate.describe()}; the original model was written"


_STOPPED = {
    "all-tried": "every planned move was made",
    "unaffordable": "what was left was estimated beyond the remaining budget",
    "budget-spent": "the time budget ran out",
}


def stopped(report: OptimizeReport) -> str | None:
    """One line: why the search stopped and what it left untried (None for a report without a stop reason)."""
    if report.stop_reason is None:
        return None
    left = [u for u in report.untried if u.get("reason") != "not-applicable"]
    line = f"stopped: {_STOPPED.get(report.stop_reason, report.stop_reason)}"
    if left:
        line += "; untried: " + "; ".join(f"{u['what']} ({u['reason']}: {u['detail']})" for u in left[:_LISTED])
        if len(left) > _LISTED:
            line += f"; and {len(left) - _LISTED} more (report.json's untried)"
    return line


_LISTED = 3  # untried moves named on the terminal; the report lists every one
