"""The terminal view of an optimize report: one rich table of every candidate and a verdict line."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

_STYLES = {"baseline": "blue", "accepted": "green", "rejected": "red", "failed": "bright_black", "not-run": "dim"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{float(value):.{digits}g}"


def candidates_table(report: dict[str, Any]) -> Table:
    """Every candidate with status, latency, speed-up, the gate metric and why it was rejected."""
    metric = report["gate"]["metric"]
    winner = report["winner"]["id"]
    table = Table(title=f"honed optimize — gate: {report['gate']['describe']}", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("candidate", min_width=24, ratio=3)
    table.add_column("status", no_wrap=True)
    table.add_column("p50 ms", justify="right", no_wrap=True)
    table.add_column("p99 ms", justify="right", no_wrap=True)
    table.add_column("speed-up", justify="right", no_wrap=True)
    table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("why", ratio=2, overflow="ellipsis", max_width=60)
    for row in report["candidates"]:
        lat = row.get("latency_ms") or {}
        status = Text(row["status"], style=_STYLES.get(row["status"], ""))
        why = " ".join(x for x in (row.get("reason"), row.get("note")) if x)
        table.add_row(
            ("★ " if row["id"] == winner else "") + row["id"],
            row["label"],
            status,
            _fmt(lat.get("p50")),
            _fmt(lat.get("p99")),
            (_fmt(row.get("speedup")) + "x") if row.get("speedup") else "–",
            _fmt(row.get("metric_value"), 5),
            why,
        )
    return table


def verdict(report: dict[str, Any]) -> str:
    """One line: what was chosen and by how much."""
    winner = report["winner"]
    if report["status"] == "improved":
        return (
            f"winner {winner['id']}: {winner['label']} — {_fmt(winner.get('speedup'))}x faster, "
            f"{report['gate']['metric']} {_fmt(winner.get('metric_value'), 5)}"
        )
    return f"no candidate beat the original inside {report['gate']['describe']}; the original model was written"
