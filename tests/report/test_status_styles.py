"""Every candidate status a report can hold has its colour in report.html and its style in the terminal table."""

from __future__ import annotations

from honed.report.html import STATUS_COLOURS
from honed.report.terminal import STATUS_STYLES
from honed.search.document import CandidateStatus


def test_every_status_is_coloured_in_both_views() -> None:
    assert set(STATUS_COLOURS) == set(CandidateStatus) == set(STATUS_STYLES)
    assert len(set(STATUS_COLOURS.values())) == len(STATUS_COLOURS)  # no two statuses look alike
