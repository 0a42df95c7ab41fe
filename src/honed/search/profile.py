"""Per-op time of one candidate: run it with the backend's profiler on and total the time by op type.

ONNX Runtime's trace is parsed by :func:`honed.bench.profile.parse_ort_profile`; the OpenVINO backend writes
a list of ``{name, op, time_us}`` for the last request. Both become rows of ``{op, time_us, calls, share}``,
largest first, time per run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from honed.bench.profile import parse_ort_profile
from honed.errors import HonedError
from honed.runtime import RuntimeConfig, create_session

_ITERATIONS = 10


def op_profile(
    model: Path, config: RuntimeConfig, feeds: dict[str, np.ndarray[Any, Any]], folder: Path
) -> list[dict[str, Any]]:
    """Rows of per-op-type time per run; empty when the backend cannot profile or the run fails."""
    try:
        session = create_session(model, config, profile_dir=folder)
        for _ in range(_ITERATIONS):
            session.run(feeds)
        trace = session.end_profiling()
    except HonedError:
        return []
    if trace is None or not trace.is_file():
        return []
    if config.backend == "openvino":
        return summarize_openvino(json.loads(trace.read_text()))
    parsed = parse_ort_profile(trace)
    runs = parsed.runs or _ITERATIONS
    return [
        {"op": o.op_type, "time_us": round(o.total_ms * 1e3 / runs, 2), "calls": o.calls // runs, "share": o.fraction}
        for o in parsed.by_op_type
    ]


def summarize_openvino(rows: Any) -> list[dict[str, Any]]:
    """Totals by layer type from the OpenVINO backend's per-layer list (one run)."""
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and "time_us" in row:
            op = str(row.get("op", "?"))
            totals[op] = totals.get(op, 0.0) + float(row["time_us"])
            calls[op] = calls.get(op, 0) + 1
    total = sum(totals.values()) or 1.0
    out = [
        {"op": op, "time_us": round(t, 2), "calls": calls[op], "share": round(t / total, 4)}
        for op, t in sorted(totals.items(), key=lambda kv: -kv[1])
    ]
    return out
