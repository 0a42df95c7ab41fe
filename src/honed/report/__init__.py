"""Report: renders an optimize report (report.json, the source of truth) as HTML and as a terminal table.

Everything here takes the report as a :class:`~honed.search.document.OptimizeReport`, so a report can be
re-rendered from its JSON alone (``OptimizeReport.read("out/report.json")``).
"""

from honed.report.html import chart_svg, render_html, write_html
from honed.report.terminal import candidates_table, verdict

__all__ = ["candidates_table", "chart_svg", "render_html", "verdict", "write_html"]
