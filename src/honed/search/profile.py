"""Per-op time of one candidate: run it with the backend's profiler on and total the time by op type.

ONNX Runtime writes a Chrome trace (events with ``cat == "Node"``, ``dur`` in microseconds and the op type
in ``args.op_name``); the OpenVINO backend writes a list of ``{name, op, time_us}``. Both become rows of
``{op, time_us, calls, share}``, largest first, time per run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

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
    return summarize_trace(json.loads(trace.read_text()), runs=_ITERATIONS)


def summarize_trace(events: Any, *, runs: int = 1) -> list[dict[str, Any]]:
    """Totals by op type from an ONNX Runtime trace or the OpenVINO backend's list, per run."""
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, dict):
            continue
        if "time_us" in event:  # OpenVINO backend rows (already one run: the last request's counters)
            op, time_us, per_run = str(event.get("op", "?")), float(event["time_us"]), 1
        elif event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            op, time_us, per_run = str(event.get("args", {}).get("op_name", "?")), float(event.get("dur", 0)), runs
        else:
            continue
        totals[op] = totals.get(op, 0.0) + time_us / per_run
        calls[op] = calls.get(op, 0) + 1
    total = sum(totals.values()) or 1.0
    rows = [
        {"op": op, "time_us": round(t, 2), "calls": calls[op], "share": round(t / total, 4)} for op, t in totals.items()
    ]
    rows.sort(key=lambda r: -totals[str(r["op"])])
    return rows
