"""The optimize report (``report.json``, schema ``honed-optimize-report/1``) as read by the parts downstream of
the search: ``honed plan`` (the winner's bench-v1 profile) and the registry.

:mod:`honed.search.api` writes the report; this module owns its schema name and the typed reading of it, so a
report of another schema, or a truncated one, is refused with the file and the field named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.bench.document import BenchDocument, read_json
from honed.errors import InvalidArgument

REPORT_SCHEMA = "honed-optimize-report/1"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class OptimizeReport:
    """What downstream readers take from an optimize report."""

    status: str
    exit_code: int
    complete: bool
    winner_bench: BenchDocument | None
    """The winner (``out/model.onnx``) as a bench-v1 document: its measured rows on the optimize machine."""
    replay: bool = False

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> OptimizeReport:
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{origin}: an optimize report must be a JSON object")
        schema = data.get("schema")
        if schema != REPORT_SCHEMA:
            raise InvalidArgument(
                f"{origin}: expected schema {REPORT_SCHEMA!r}, got {schema!r}; write it with honed optimize"
            )
        for key in ("status", "exit_code"):
            if key not in data:
                raise InvalidArgument(f"{origin}: missing {key!r} (a truncated report? rerun honed optimize)")
        bench = data.get("winner_bench")
        exit_code = data["exit_code"]
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise InvalidArgument(f"{origin}: exit_code must be a whole number, got {exit_code!r}")
        return cls(
            status=str(data["status"]),
            exit_code=exit_code,
            complete=bool(data.get("complete", True)),
            winner_bench=BenchDocument.from_dict(bench, f"{origin}: winner_bench") if bench is not None else None,
            replay=data.get("mode") == "replay",
        )

    @classmethod
    def read(cls, path: str | Path) -> OptimizeReport:
        return cls.from_dict(read_json(path, "optimize report"), str(path))
