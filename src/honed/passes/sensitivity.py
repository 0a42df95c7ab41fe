"""Sensitive-layer fallback for static INT8: keep the layers that hurt accuracy most in float.

:func:`rank_sensitivity` quantizes one node at a time (everything else in FP32) and measures how far the
model's outputs move from the FP32 model's on calibration batches; that error is the node's own
contribution, independent of what other layers do. :func:`sensitive_layer_fallback` then excludes the worst
nodes from quantization, the fewest for which the caller's ``accept(model)`` (an accuracy gate) holds.
Calibration runs once: every variant reuses the same activation ranges.

The result's ``params`` are ``int8-static`` parameters with ``nodes_to_exclude`` filled in: running the
``int8-static`` pass with them on the same model gives the same bytes, so a recipe can replay it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from honed.errors import HonedError
from honed.passes._graph import scratch_dir, write
from honed.passes.base import PassContext, PassError
from honed.passes.int8_static import Int8StaticPass, prepare, quantize_prepared

# ops whose quantization changes the arithmetic; pure data movement (Reshape, Transpose, ...) is not ranked
RANKED_OPS = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Softmax",
    "Sigmoid",
    "Tanh",
    "LayerNormalization",
    "InstanceNormalization",
    "BatchNormalization",
    "AveragePool",
    "GlobalAveragePool",
    "Gather",
    "Resize",
    "Concat",
    "Where",
    "LeakyRelu",
    "Clip",
    "Relu",
    "MaxPool",
)


@dataclass(frozen=True)
class LayerError:
    """One node's own contribution: the output error when only this node is quantized."""

    node: str
    op_type: str
    error: float


@dataclass
class FallbackResult:
    """What :func:`sensitive_layer_fallback` found.

    ``model`` is the accepted model (or the last one tried when none was accepted); ``params`` the
    ``int8-static`` parameters that rebuild it; ``excluded`` the nodes kept in float, worst first;
    ``ranking`` every ranked node, worst first (empty when full INT8 was accepted); ``tried`` how many
    models were offered to ``accept``.
    """

    model: onnx.ModelProto
    params: dict[str, Any]
    excluded: tuple[str, ...]
    accepted: bool
    ranking: list[LayerError] = field(default_factory=list)
    tried: int = 0


class ReferenceOutputs:
    """The FP32 model's outputs on the first ``batches`` calibration batches, to score candidates against."""

    def __init__(self, reference: onnx.ModelProto, ctx: PassContext, batches: int) -> None:
        from honed.runtime import create_session

        if ctx.calibration is None:
            raise PassError("sensitivity analysis needs calibration data; pass --data")
        self._ctx = ctx
        self.feeds: list[dict[str, np.ndarray[Any, Any]]] = []
        self.outputs: list[dict[str, np.ndarray[Any, Any]]] = []
        with scratch_dir(ctx) as folder:
            session = create_session(write(reference, folder, "reference.onnx"))
            dtypes = {spec.name: spec.dtype for spec in session.inputs}
            for i, batch in enumerate(ctx.calibration()):
                if i >= batches:
                    break
                feed = {n: np.ascontiguousarray(batch[n], dtype=d) for n, d in dtypes.items()}
                self.feeds.append(feed)
                self.outputs.append(session.run(feed))

    def error(self, candidate: onnx.ModelProto) -> float:
        """Mean over outputs and batches of ||out - ref|| / ||ref||; inf when an output holds NaN or Inf."""
        from honed.runtime import create_session

        errors: list[float] = []
        with scratch_dir(self._ctx) as folder:
            session = create_session(write(candidate, folder, "candidate.onnx"))
            for feed, want in zip(self.feeds, self.outputs, strict=True):
                got = session.run(feed)
                for name, expected in want.items():
                    actual = got[name].astype(np.float64)
                    if not np.all(np.isfinite(actual)):
                        return float("inf")
                    expected64 = expected.astype(np.float64)
                    denom = max(float(np.linalg.norm(expected64)), 1e-12)
                    errors.append(float(np.linalg.norm(actual - expected64)) / denom)
        return float(np.mean(errors)) if errors else 0.0


def output_error(reference: onnx.ModelProto, candidate: onnx.ModelProto, ctx: PassContext, batches: int = 4) -> float:
    """Relative output error of ``candidate`` against ``reference`` on the first calibration batches."""
    return ReferenceOutputs(reference, ctx, batches).error(candidate)


def rank_sensitivity(
    model: onnx.ModelProto,
    params: Mapping[str, Any] | None,
    ctx: PassContext,
    *,
    batches: int = 4,
    prepared: onnx.ModelProto | None = None,
    calibration_cache: Path | None = None,
) -> list[LayerError]:
    """Every quantizable node of the prepared model with its own output error, worst first (ties by name)."""
    resolved = Int8StaticPass().resolve(params, ctx)
    prepared = prepared if prepared is not None else prepare(model, ctx, preprocess=resolved["preprocess"])
    reference = ReferenceOutputs(prepared, ctx, batches)
    wanted = set(resolved["op_types"]) or set(RANKED_OPS)
    excluded = set(resolved["nodes_to_exclude"])
    ranking: list[LayerError] = []
    with scratch_dir(ctx) as folder:
        cache = calibration_cache or folder / "calibration.json"
        for node in prepared.graph.node:
            if node.op_type not in wanted or node.name in excluded:
                continue
            try:
                single = quantize_prepared(
                    prepared, resolved, ctx, nodes_to_quantize=(node.name,), calibration_cache=cache
                )
            except PassError:
                continue  # the quantizer cannot take this node alone; it is not a candidate
            if not any(n.op_type == "QuantizeLinear" for n in single.graph.node):
                continue  # the quantizer leaves this node float on its own (e.g. no calibrated range)
            ranking.append(LayerError(node.name, node.op_type, reference.error(single)))
    ranking.sort(key=lambda e: (-e.error, e.node))
    return ranking


def sensitive_layer_fallback(
    model: onnx.ModelProto,
    params: Mapping[str, Any] | None,
    ctx: PassContext,
    accept: Callable[[onnx.ModelProto], bool],
    *,
    max_excluded: int | None = None,
    batches: int = 4,
) -> FallbackResult:
    """Static INT8 with the fewest sensitive nodes kept in float such that ``accept(model)`` holds.

    Tries full INT8 first; when ``accept`` refuses it, ranks nodes (:func:`rank_sensitivity`, on ``batches``
    calibration batches) and keeps the worst ``k`` in float for the smallest ``k`` (up to ``max_excluded``,
    default every ranked node) that ``accept`` holds for, found by doubling ``k`` and then bisecting.
    ``accept`` raising a honed error counts as a refusal. Raises :class:`PassError` when the model cannot be
    quantized at all.
    """
    resolved = Int8StaticPass().resolve(params, ctx)
    prepared = prepare(model, ctx, preprocess=resolved["preprocess"])
    base_excluded = tuple(resolved["nodes_to_exclude"])
    with scratch_dir(ctx) as folder:
        cache = folder / "calibration.json"

        def build(extra: tuple[str, ...]) -> tuple[onnx.ModelProto, dict[str, Any]]:
            values = dict(resolved, nodes_to_exclude=base_excluded + extra)
            return quantize_prepared(prepared, values, ctx, calibration_cache=cache), values

        current, values = build(())
        tried = 1
        if _accepts(accept, current):
            return FallbackResult(current, values, (), True, [], tried)
        ranking = rank_sensitivity(model, resolved, ctx, batches=batches, prepared=prepared, calibration_cache=cache)
        limit = len(ranking) if max_excluded is None else min(max_excluded, len(ranking))
        # the smallest k whose worst-k exclusion is accepted: k = 1, 2, 4, ... until accepted, then bisect;
        # accuracy grows (nearly) monotonically with k, and this needs O(log n) tries instead of n
        built: dict[int, tuple[onnx.ModelProto, dict[str, Any]]] = {}
        verdicts: dict[int, bool] = {}

        def accepted_at(k: int) -> bool:
            nonlocal tried
            if k not in verdicts:
                built[k] = build(tuple(e.node for e in ranking[:k]))
                tried += 1
                verdicts[k] = _accepts(accept, built[k][0])
            return verdicts[k]

        low, high, k = 0, None, 1
        while k <= limit:
            if accepted_at(k):
                high = k
                break
            low = k
            k = min(2 * k, limit) if k < limit else limit + 1
        if high is None:
            last = max(built)
            model_, values_ = built[last]
            return FallbackResult(model_, values_, tuple(e.node for e in ranking[:last]), False, ranking, tried)
        while high - low > 1:
            mid = (low + high) // 2
            if accepted_at(mid):
                high = mid
            else:
                low = mid
        model_, values_ = built[high]
        return FallbackResult(model_, values_, tuple(e.node for e in ranking[:high]), True, ranking, tried)


def _accepts(accept: Callable[[onnx.ModelProto], bool], model: onnx.ModelProto) -> bool:
    try:
        return bool(accept(model))
    except HonedError:
        return False  # a candidate the gate cannot even run is not accepted
