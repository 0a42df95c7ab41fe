"""Per-op time from ONNX Runtime's profiler trace (Chrome trace JSON): which ops the time goes to."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument


@dataclass(frozen=True)
class OpTime:
    """Total kernel time of one op type (or one node) over the profiled runs."""

    name: str
    op_type: str
    total_ms: float
    calls: int
    fraction: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> OpTime:
        try:
            return cls(
                name=str(data["name"]),
                op_type=str(data["op_type"]),
                total_ms=float(data["total_ms"]),
                calls=int(data["calls"]),
                fraction=float(data["fraction"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"{where}: malformed op time ({exc!r})") from exc


@dataclass(frozen=True)
class OpProfile:
    """Kernel time by op type and by node, from one profiled measurement."""

    runs: int
    total_ms: float
    by_op_type: list[OpTime]
    by_node: list[OpTime]

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "total_kernel_ms": self.total_ms,
            "by_op_type": [o.to_dict() for o in self.by_op_type],
            "top_nodes": [o.to_dict() for o in self.by_node],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> OpProfile:
        if not isinstance(data, dict):
            raise InvalidArgument(f"{where} must be a JSON object")
        try:
            return cls(
                runs=int(data["runs"]),
                total_ms=float(data["total_kernel_ms"]),
                by_op_type=[OpTime.from_dict(o, f"{where}.by_op_type") for o in data["by_op_type"]],
                by_node=[OpTime.from_dict(o, f"{where}.top_nodes") for o in data["top_nodes"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"{where}: malformed per-op profile ({exc!r})") from exc


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
