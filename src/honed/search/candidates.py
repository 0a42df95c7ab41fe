"""Candidates: (passes with parameters, runtime config) pairs, and the plan of which ones to try.

A :class:`Candidate` is a value: its :meth:`~Candidate.key` is a stable hash of what it is, so the cache and
the recipe can name it. :func:`plan_pipelines` asks every registered pass whether it can help on each
backend (recording why not) and lists the pass pipelines worth building; :func:`runtime_variants` lists the
thread/affinity/spinning settings worth measuring for a backend on this machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import onnx

from honed.passes import PassContext, all_passes
from honed.runtime import RuntimeConfig

# Passes that only make sense after another decision (sensitive-layer fallback is driven by the search).
_NOT_STANDALONE = frozenset({"sensitive-fallback"})


@dataclass(frozen=True)
class Step:
    """One pass application: the pass name and its resolved parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": _jsonable(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(str(data["name"]), dict(data.get("params") or {}))

    def label(self) -> str:
        shown = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()) if k not in _QUIET_PARAMS)
        excluded = self.params.get("nodes_to_exclude")
        if excluded:
            shown += f"{',' if shown else ''}float_nodes={len(excluded)}"
        return f"{self.name}({shown})" if shown else self.name


# parameters left out of short labels (the report and the recipe keep every parameter)
_QUIET_PARAMS = frozenset(
    {
        "shape_inference",
        "slim",
        "subset_size",
        "fast_bias_correction",
        "nodes_to_exclude",
        "calibration_batches",
        "op_types",
        "preprocess",
        "percentile",
        "weight_type",
    }
)


@dataclass(frozen=True)
class Candidate:
    """A pipeline of passes plus the runtime config that serves its output."""

    steps: tuple[Step, ...]
    runtime: RuntimeConfig

    @property
    def backend(self) -> str:
        return self.runtime.backend

    def pipeline_dict(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    def model_key(self) -> str:
        """Hash of the pass pipeline alone: candidates that differ only in runtime share the built model."""
        return _digest({"steps": self.pipeline_dict()})

    def key(self) -> str:
        return _digest({"steps": self.pipeline_dict(), "runtime": self.runtime.to_dict()})

    def label(self) -> str:
        passes = " + ".join(s.label() for s in self.steps) or "original"
        return f"{passes} @ {self.runtime.label()}"

    def to_dict(self) -> dict[str, Any]:
        return {"passes": self.pipeline_dict(), "backend": self.backend, "runtime": self.runtime.to_dict()}


@dataclass(frozen=True)
class Skipped:
    """A pass (or pass setting) not tried on a backend, and why."""

    name: str
    backend: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.name, "backend": self.backend, "reason": self.reason}


def plan_pipelines(
    model: onnx.ModelProto, backend: str, ctx: PassContext, *, only: tuple[str, ...] | None = None
) -> tuple[list[tuple[Step, ...]], list[Skipped]]:
    """Single-pass pipelines worth building for ``backend`` (most promising first), and the passes skipped.

    ``only`` limits the passes considered to those names (None: every registered pass).
    """
    pipelines: list[tuple[Step, ...]] = []
    skipped: list[Skipped] = []
    for p in all_passes():
        if p.name in _NOT_STANDALONE or (only is not None and p.name not in only):
            continue
        reason = p.skip_reason(ctx, None, model)
        if reason is not None:
            skipped.append(Skipped(p.name, backend, reason))
            continue
        try:
            space = p.search_space(ctx)
        except Exception as exc:  # a pass that cannot even plan for this target is skipped, not fatal
            skipped.append(Skipped(p.name, backend, f"could not plan: {exc}"))
            continue
        for params in space:
            reason = p.skip_reason(ctx, params, model)
            if reason is not None:
                skipped.append(Skipped(p.name, backend, reason))
                continue
            pipelines.append((Step(p.name, dict(params)),))
    return pipelines, skipped


def runtime_variants(backend: str, cpus: tuple[int, ...], *, objective: str = "latency") -> list[RuntimeConfig]:
    """Runtime settings worth measuring for ``backend`` on the usable CPU ids ``cpus``; the first is the default."""
    cpus = cpus or (0,)
    cores = len(cpus)
    if backend == "openvino":
        hint = "THROUGHPUT" if objective == "throughput" else "LATENCY"
        base = RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint})
        variants = [base, base.with_(intra_op_threads=cores)]
        if cores > 1:
            variants.append(base.with_(intra_op_threads=1))
        return _unique(variants)
    base = RuntimeConfig()
    variants = [
        base,
        base.with_(intra_op_threads=cores),
        base.with_(intra_op_threads=cores, spinning=False),
        base.with_(intra_op_threads=cores, affinity=tuple(cpus)),
    ]
    if cores > 1:
        variants.append(base.with_(intra_op_threads=1))
    return _unique(variants)


def _unique(configs: list[RuntimeConfig]) -> list[RuntimeConfig]:
    seen: set[str] = set()
    out = []
    for c in configs:
        key = json.dumps(c.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    if isinstance(value, list | tuple):
        return f"[{len(value)}]"
    return str(value)


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
