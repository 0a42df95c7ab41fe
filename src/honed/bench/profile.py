"""Per-op time from ONNX Runtime's profiler trace (Chrome trace JSON): which ops the time goes to."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from honed.fields import Document


@dataclass(frozen=True)
class OpTime(Document):
    """Total kernel time of one op type (or one node) over the profiled runs."""

    name: str
    op_type: str
    total_ms: float
    calls: int
    fraction: float


@dataclass(frozen=True)
class OpProfile(Document):
    """Kernel time by op type and by node, from one profiled measurement."""

    json_keys: ClassVar[Mapping[str, str]] = {"total_ms": "total_kernel_ms", "by_node": "top_nodes"}

    runs: int
    total_ms: float
    by_op_type: list[OpTime]
    by_node: list[OpTime]


def parse_ort_profile(path: Path, *, top: int = 10) -> OpProfile:
    """Sum ``*_kernel_time`` events of an ORT trace by op type and by node; keep the ``top`` nodes."""
    events = json.loads(path.read_text())
    by_type: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    by_node: dict[str, list[Any]] = {}
    runs = 0
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs += 1
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        op_type = str(args.get("op_name", "?"))
        node = str(event["name"])[: -len("_kernel_time")]
        dur_ms = float(event.get("dur", 0)) / 1e3
        by_type[op_type][0] += dur_ms
        by_type[op_type][1] += 1
        entry = by_node.setdefault(node, [op_type, 0.0, 0])
        entry[1] += dur_ms
        entry[2] += 1
    total = sum(v[0] for v in by_type.values())

    def frac(ms: float) -> float:
        return ms / total if total > 0 else 0.0

    types = sorted(
        (OpTime(t, t, ms, int(n), frac(ms)) for t, (ms, n) in by_type.items()), key=lambda o: o.total_ms, reverse=True
    )
    nodes = sorted(
        (OpTime(name, op, ms, int(n), frac(ms)) for name, (op, ms, n) in by_node.items()),
        key=lambda o: o.total_ms,
        reverse=True,
    )[:top]
    return OpProfile(runs=runs, total_ms=total, by_op_type=types, by_node=nodes)
