"""Candidates: (passes with parameters, runtime config) pairs, and the plan of which ones to try, in what order.

A :class:`Candidate` is a value: its :meth:`~Candidate.key` is a stable hash of what it is, so the cache and
the recipe can name it. :func:`plan_pipelines` asks every registered pass whether it can help on each
backend (recording why not) and lists the pass pipelines worth building: single passes and combined ones (a
graph or fusion pass followed by a quantization pass). :func:`payoff_rank` orders pipelines by their expected
payoff for the kind of model (:class:`ModelProfile`: transformer-like, convolutional or other) and the CPU's
ISA, so a time budget is spent on what is known to pay first. :func:`runtime_variants` asks a backend for the
runtime settings worth measuring on this machine (threads, affinity, spinning; hints).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from honed.canonical import digest
from honed.errors import HonedError, InvalidArgument
from honed.hardware import ISA_CLASSES, isa_class
from honed.passes import PassContext, all_passes, get_pass
from honed.runtime import RuntimeConfig, get_backend

# Passes that only make sense after another decision (sensitive-layer fallback is driven by the search).
_NOT_STANDALONE = frozenset({"sensitive-fallback"})

# Combined pipelines: a graph-level pass (with these parameters) followed by a quantization pass. ``graph`` runs
# at its portable level: ``extended`` fuses into contrib ops the quantizers cannot quantize.
_PREFIXES: tuple[tuple[str, dict[str, Any]], ...] = (("transformer-fusion", {}), ("graph", {"level": "basic"}))
_QUANTIZERS = ("int8-dynamic", "int8-static", "nncf-int8")

# Expected payoff, lower = tried earlier; keyed by (model kind, ISA class), then by the pipeline's pass names (with
# the backend for the original model on another backend). The ISA classes are :data:`honed.hardware.ISA_CLASSES`:
# ``avx2`` (no 8-bit dot product), ``vnni`` (AVX512_VNNI/AVX_VNNI), ``bf16`` (VNNI and native BF16), ``amx``
# (AMX-INT8/AMX-BF16 tiles). What the ranks encode, measured on x86 CPUs:
# - transformers: ORT dynamic INT8 of the MatMuls (after fusing LayerNorm/GELU/attention) is the largest win
#   without BF16; static QDQ on every op wrecks the embeddings, so it goes last; without VNNI, NNCF's INT8 on
#   OpenVINO (about a minute to calibrate) ran at 0.74-1.03x ONNX Runtime FP32 on MiniLM (two runs at batch 1 and
#   32 on a Zen 3), so it goes with the known losers, behind the tuning of the leaders; with BF16 (and more
#   so with AMX), NNCF INT8 on OpenVINO with the rest of the graph in BF16 led (MiniLM batch 32: 3.0-3.5x ORT
#   FP32), OpenVINO BF16 came next (2.1x), fusion + ORT dynamic INT8 third (1.8x);
# - CNNs: ORT's dynamic INT8 (ConvInteger, MatMulInteger on activations) is several times slower than FP32,
#   so it goes last; static INT8 pays where VNNI dot products exist, graph clean-up pays everywhere; with BF16,
#   NNCF INT8 on OpenVINO (1.9-2.6x on a detection CNN) and OpenVINO BF16 (1.8x) lead.
_ORIGINAL = "original"
_LAST = 9
_TRANSFORMER_BF16: dict[tuple[str, ...], int] = {
    ("nncf-int8",): 0,
    (_ORIGINAL, "openvino"): 1,
    ("transformer-fusion", "int8-dynamic"): 2,
    ("int8-dynamic",): 3,
    ("graph", "int8-dynamic"): 4,
    ("graph", "nncf-int8"): 5,
    ("transformer-fusion",): 5,
    ("graph",): 6,
    ("int8-static",): 8,
    ("graph", "int8-static"): 8,
    ("transformer-fusion", "int8-static"): 8,
}
_CONV_BF16: dict[tuple[str, ...], int] = {
    ("nncf-int8",): 0,
    (_ORIGINAL, "openvino"): 1,
    ("graph", "nncf-int8"): 2,
    ("int8-static",): 2,
    ("graph", "int8-static"): 3,
    ("graph",): 4,
    ("int8-dynamic",): _LAST,
    ("graph", "int8-dynamic"): _LAST,
}
_OTHER_BF16: dict[tuple[str, ...], int] = {
    ("graph",): 0,
    (_ORIGINAL, "openvino"): 1,
    ("int8-static",): 1,
    ("graph", "int8-static"): 1,
    ("nncf-int8",): 2,
    ("int8-dynamic",): 2,
}
_PAYOFF: dict[tuple[str, str], dict[tuple[str, ...], int]] = {
    ("transformer", "avx2"): {
        ("transformer-fusion", "int8-dynamic"): 0,
        ("int8-dynamic",): 1,
        ("graph", "int8-dynamic"): 2,
        (_ORIGINAL, "openvino"): 3,
        ("transformer-fusion",): 4,
        ("graph",): 5,
        ("nncf-int8",): _LAST - 1,
        ("graph", "nncf-int8"): _LAST - 1,
        ("int8-static",): 8,
        ("graph", "int8-static"): 8,
        ("transformer-fusion", "int8-static"): 8,
    },
    ("transformer", "vnni"): {
        ("transformer-fusion", "int8-dynamic"): 0,
        ("nncf-int8",): 1,
        ("int8-dynamic",): 2,
        ("graph", "int8-dynamic"): 3,
        (_ORIGINAL, "openvino"): 4,
        ("transformer-fusion",): 5,
        ("graph",): 6,
        ("int8-static",): 8,
        ("graph", "int8-static"): 8,
        ("transformer-fusion", "int8-static"): 8,
    },
    ("transformer", "bf16"): _TRANSFORMER_BF16,
    # AMX runs both INT8 (TDPBSSD) and BF16 (TDPBF16PS) on tiles: the same order as BF16, by a wider margin
    ("transformer", "amx"): _TRANSFORMER_BF16,
    ("conv", "avx2"): {
        ("graph",): 0,
        (_ORIGINAL, "openvino"): 1,
        ("int8-static",): 2,
        ("graph", "int8-static"): 3,
        ("nncf-int8",): 4,
        ("int8-dynamic",): _LAST,
        ("graph", "int8-dynamic"): _LAST,
    },
    ("conv", "vnni"): {
        ("int8-static",): 0,
        ("graph", "int8-static"): 1,
        ("nncf-int8",): 2,
        ("graph",): 3,
        (_ORIGINAL, "openvino"): 4,
        ("int8-dynamic",): _LAST,
        ("graph", "int8-dynamic"): _LAST,
    },
    ("conv", "bf16"): _CONV_BF16,
    ("conv", "amx"): _CONV_BF16,
    ("other", "avx2"): {("graph",): 0, ("int8-dynamic",): 1, ("graph", "int8-dynamic"): 1, ("int8-static",): 2},
    ("other", "vnni"): {("graph",): 0, ("int8-static",): 1, ("graph", "int8-static"): 1, ("int8-dynamic",): 2},
    ("other", "bf16"): _OTHER_BF16,
    ("other", "amx"): _OTHER_BF16,
}
# Within one pipeline's rank, the order of the compute precisions an OpenVINO candidate is tried at: where the CPU
# has native BF16 (or AMX), the rest of the graph in BF16 first; elsewhere (f16/bf16 only emulated) f32 first.
_PRECISION_ORDER: dict[str, tuple[str, ...]] = {
    "avx2": ("f32", "bf16", "f16"),
    "vnni": ("f32", "bf16", "f16"),
    "bf16": ("bf16", "f32", "f16"),
    "amx": ("bf16", "f16", "f32"),
}
_UNLISTED = 7  # a pipeline the table does not name: after the known winners, before the known losers
_LONG_SHOT = _LAST - 1  # from this rank on, a pipeline is a known loser: the leaders' tuning runs before it


@dataclass(frozen=True)
class ModelProfile:
    """What decides which pipelines pay: the kind of model (``transformer``, ``conv``, ``other``) and the CPU's
    ISA class (:data:`honed.hardware.ISA_CLASSES`: ``avx2``, ``vnni``, ``bf16``, ``amx``)."""

    kind: str
    isa_class: str

    def __post_init__(self) -> None:
        if self.isa_class not in ISA_CLASSES:
            raise InvalidArgument(f"unknown ISA class {self.isa_class!r}; known: {', '.join(ISA_CLASSES)}")

    @property
    def vnni(self) -> bool:
        """Whether the CPU has a non-saturating 8-bit dot product (every class above ``avx2``)."""
        return self.isa_class != "avx2"

    @classmethod
    def of(cls, model: onnx.ModelProto, ctx: PassContext) -> ModelProfile:
        from honed.passes.transformer_fusion import is_transformer_like

        ops = {n.op_type for n in model.graph.node}
        if is_transformer_like(model) or ops & {"Attention", "MultiHeadAttention"}:
            kind = "transformer"
        elif ops & {"Conv", "ConvTranspose"}:
            kind = "conv"
        else:
            kind = "other"
        return cls(kind, isa_class(ctx.isa))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "isa_class": self.isa_class, "vnni": self.vnni}


def payoff_rank(steps: tuple[Step, ...], backend: str, profile: ModelProfile) -> int:
    """Expected-payoff rank of a pipeline on ``backend`` for a model of ``profile`` (lower: try earlier)."""
    key = tuple(s.name for s in steps) if steps else (_ORIGINAL, backend)
    rank = _PAYOFF.get((profile.kind, profile.isa_class), {}).get(key, _UNLISTED)
    # one scale per weight tensor crushes transformer projections (MiniLM: cosine 0.87-0.96 against a usual 0.99
    # budget); per-channel keeps them, so per-tensor dynamic INT8 waits until the end
    per_tensor = bool(steps) and steps[-1].name == "int8-dynamic" and not steps[-1].params.get("per_channel")
    if profile.kind == "transformer" and per_tensor:
        rank = max(rank, _LAST - 1)
    return rank


def is_long_shot(candidate: Candidate, profile: ModelProfile) -> bool:
    """Whether ``candidate`` is one that measurements on this class of CPU found to lose (per-tensor INT8 of a
    transformer, dynamic INT8 of a CNN, NNCF INT8 of a transformer without VNNI): the search tunes its leaders
    before it spends budget on these."""
    return payoff_rank(candidate.steps, candidate.backend, profile) >= _LONG_SHOT


def candidate_rank(candidate: Candidate, profile: ModelProfile) -> tuple[int, int]:
    """Where ``candidate`` goes in the search order: its pipeline's :func:`payoff_rank`, then its compute precision
    in the order that pays on ``profile``'s ISA class (lower: try earlier)."""
    order = _PRECISION_ORDER[profile.isa_class]
    rest = candidate.compute_precision
    return payoff_rank(candidate.steps, candidate.backend, profile), order.index(rest) if rest in order else len(order)


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
        excluded = self.params.get("nodes_to_exclude") or self.params.get("ignored_scope")
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
        "ignored_scope",
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
        return digest({"steps": self.pipeline_dict()})

    def key(self) -> str:
        return digest({"steps": self.pipeline_dict(), "runtime": self.runtime.to_dict()})

    @property
    def compute_precision(self) -> str:
        """What the graph's float ops compute in: OpenVINO's ``INFERENCE_PRECISION_HINT`` (f32 unless set), f16
        after the fp16 pass, else f32."""
        hint = {k.upper(): v for k, v in self.runtime.options.items()}.get("INFERENCE_PRECISION_HINT")
        if hint:
            return hint.lower()
        return "f16" if any(s.name == "fp16" for s in self.steps) else "f32"

    @property
    def precision(self) -> str:
        """The candidate's precision as the report names it: ``f32``, ``bf16``, ``f16``, or ``int8+<rest>`` when a
        quantization pass made INT8 ops and the rest of the graph computes in ``<rest>``."""
        quantized = any(s.name in _QUANTIZERS or s.name in _NOT_STANDALONE for s in self.steps)
        return f"int8+{self.compute_precision}" if quantized else self.compute_precision

    def label(self) -> str:
        passes = " + ".join(s.label() for s in self.steps) or "original"
        return f"{passes} [{self.precision}] @ {self.runtime.label()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passes": self.pipeline_dict(),
            "backend": self.backend,
            "runtime": self.runtime.to_dict(),
            "precision": self.precision,
        }


@dataclass(frozen=True)
class Skipped:
    """A pass (or pass setting) not tried on a backend, and why."""

    name: str
    backend: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.name, "backend": self.backend, "reason": self.reason}


def plan_pipelines(
    model: onnx.ModelProto,
    backend: str,
    ctx: PassContext,
    *,
    only: tuple[str, ...] | None = None,
    combine: bool = True,
) -> tuple[list[tuple[Step, ...]], list[Skipped]]:
    """Pipelines worth building for ``backend``, most promising first (:func:`payoff_rank`), and the passes
    skipped.

    Single passes come with every setting of their search space; with ``combine``, each applicable
    graph-level pass (``transformer-fusion``, ``graph`` at level basic) is also followed by each applicable
    quantization pass's settings. ``only`` limits the passes considered to those names (None: every
    registered pass).
    """
    singles, skipped = _single_pipelines(model, backend, ctx, only)
    pipelines = list(singles)
    if combine:
        names = {steps[0].name for steps in singles}
        for prefix_name, prefix_params in _PREFIXES:
            if prefix_name not in names:
                continue
            prefix = get_pass(prefix_name)
            try:
                prefix_step = Step(prefix_name, prefix.resolve(prefix_params, ctx))
            except HonedError:
                continue
            if prefix.skip_reason(ctx, prefix_step.params, model) is not None:
                continue
            for steps in singles:
                if steps[0].name in _QUANTIZERS:
                    pipelines.append((prefix_step, *steps))
    profile = ModelProfile.of(model, ctx)
    order = sorted(range(len(pipelines)), key=lambda i: (payoff_rank(pipelines[i], backend, profile), i))
    return [pipelines[i] for i in order], skipped


def _single_pipelines(
    model: onnx.ModelProto, backend: str, ctx: PassContext, only: tuple[str, ...] | None
) -> tuple[list[tuple[Step, ...]], list[Skipped]]:
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


def runtime_variants(backend: str, cpus: Sequence[int], *, objective: str = "latency") -> list[RuntimeConfig]:
    """Runtime settings worth measuring for ``backend`` on the usable CPU ids ``cpus``; the first is the default."""
    return get_backend(backend).runtime_variants(cpus, objective=objective)


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
