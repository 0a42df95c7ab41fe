"""Sensitive-layer fallback for INT8 (static and dynamic): keep the layers that hurt accuracy most in float.

Static INT8: :func:`rank_sensitivity` quantizes one node at a time (everything else in FP32) and measures how
far the model's outputs move from the FP32 model's on calibration batches; that error is the node's own
contribution, independent of what other layers do. Calibration runs once: every variant reuses the same
activation ranges.

Dynamic INT8: rebuilding the model once per node would cost one quantizer run per MatMul, so
:func:`rank_dynamic_sensitivity` instead captures each weighted node's float input on calibration batches (one
FP32 run) and computes, in numpy, how far the node's own product moves when its activation and weight are
quantized the way ONNX Runtime's dynamic scheme does (uint8 per-tensor activations, int8 weights, per
channel or not, 7-bit with ``reduce_range``).

:func:`sensitive_layer_fallback` then excludes the worst nodes from quantization, the fewest for which the
caller's ``accept(model)`` (an accuracy gate) holds. The result's ``params`` are the pass's parameters with
``nodes_to_exclude`` filled in: running the pass (``int8-static`` or ``int8-dynamic``) with them on the same
model gives the same bytes, so a recipe can replay it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from honed.errors import HonedError
from honed.passes._graph import scratch_dir, upgrade_opset, write
from honed.passes._quant import ensure_node_names
from honed.passes.base import PassContext, PassError
from honed.passes.int8_dynamic import DYNAMIC_MIN_OPSET, Int8DynamicPass
from honed.passes.int8_static import Int8StaticPass, prepare, quantize_prepared

if TYPE_CHECKING:
    from honed.evaluate.comparison import Comparison

FALLBACK_PASSES = ("int8-static", "int8-dynamic")
"""The passes :func:`sensitive_layer_fallback` can keep nodes of in float."""

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
    """The FP32 model's outputs on the first ``batches`` calibration batches, to score candidates against.

    Scored the way ``comparison`` compares (padded positions of a masked encoder left out), so layers are
    ranked by the error the gate will see."""

    def __init__(
        self, reference: onnx.ModelProto, ctx: PassContext, batches: int, comparison: Comparison | None = None
    ) -> None:
        if ctx.calibration is None:
            raise PassError("sensitivity analysis needs calibration data; pass --data")
        self._ctx = ctx
        self._mask = comparison.mask if comparison is not None else None
        self.feeds: list[dict[str, np.ndarray[Any, Any]]] = []
        self.outputs: list[dict[str, np.ndarray[Any, Any]]] = []
        for feed, outputs in _run_on_calibration(reference, ctx, batches):
            self.feeds.append(feed)
            self.outputs.append(outputs)

    def error(self, candidate: onnx.ModelProto) -> float:
        """Mean over batches of the mean over outputs of ||out - ref|| / ||ref||; inf when an output holds NaN
        or Inf (see :func:`honed.evaluate.comparison.batch_relative_error`)."""
        from honed.evaluate.comparison import batch_relative_error
        from honed.runtime import create_session

        errors: list[float] = []
        with scratch_dir(self._ctx) as folder:
            session = create_session(write(candidate, folder, "candidate.onnx"))
            for feed, want in zip(self.feeds, self.outputs, strict=True):
                errors.append(batch_relative_error(want, session.run(feed), feed, self._mask))
        return float(np.mean(errors)) if errors else 0.0


def _run_on_calibration(
    model: onnx.ModelProto, ctx: PassContext, batches: int
) -> Iterator[tuple[dict[str, np.ndarray[Any, Any]], dict[str, np.ndarray[Any, Any]]]]:
    """``(feed, outputs)`` of ``model`` in FP32 on the first ``batches`` calibration batches, cast to its inputs."""
    from honed.runtime import create_session

    if ctx.calibration is None:
        raise PassError("sensitivity analysis needs calibration data; pass --data")
    with scratch_dir(ctx) as folder:
        session = create_session(write(model, folder, "model.onnx"))
        dtypes = {spec.name: spec.dtype for spec in session.inputs}
        for i, batch in enumerate(ctx.calibration()):
            if i >= batches:
                break
            feed = {n: np.ascontiguousarray(batch[n], dtype=d) for n, d in dtypes.items()}
            yield feed, session.run(feed)


def output_error(
    reference: onnx.ModelProto,
    candidate: onnx.ModelProto,
    ctx: PassContext,
    batches: int = 4,
    comparison: Comparison | None = None,
) -> float:
    """Relative output error of ``candidate`` against ``reference`` on the first calibration batches."""
    return ReferenceOutputs(reference, ctx, batches, comparison).error(candidate)


def rank_sensitivity(
    model: onnx.ModelProto,
    params: Mapping[str, Any] | None,
    ctx: PassContext,
    *,
    batches: int = 4,
    prepared: onnx.ModelProto | None = None,
    calibration_cache: Path | None = None,
    comparison: Comparison | None = None,
) -> list[LayerError]:
    """Every quantizable node of the prepared model with its own output error, worst first (ties by name);
    errors are measured the way ``comparison`` compares outputs (its mask)."""
    resolved = Int8StaticPass().resolve(params, ctx)
    prepared = prepared if prepared is not None else prepare(model, ctx, preprocess=resolved["preprocess"])
    reference = ReferenceOutputs(prepared, ctx, batches, comparison)
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


def rank_dynamic_sensitivity(
    model: onnx.ModelProto,
    params: Mapping[str, Any] | None,
    ctx: PassContext,
    *,
    batches: int = 4,
    comparison: Comparison | None = None,
) -> list[LayerError]:
    """Every node ``int8-dynamic`` would quantize (MatMul/Attention with a constant weight), with the relative
    error of its own product under ONNX Runtime's dynamic INT8 scheme on calibration batches, worst first.

    Node names are those the ``int8-dynamic`` pass gives (it names unnamed nodes the same way). With the gate's
    ``comparison`` masking padded positions, a node whose input is [batch, seq, features] is scored on the real
    tokens' rows only (its activation range still spans every row, as at run time).
    """

    if ctx.calibration is None:
        raise PassError("sensitivity analysis needs calibration data; pass --data")
    resolved = Int8DynamicPass().resolve(params, ctx)
    named = onnx.ModelProto()
    named.CopyFrom(upgrade_opset(model, DYNAMIC_MIN_OPSET))
    ensure_node_names(named)
    weights = {t.name: t for t in named.graph.initializer}
    excluded = set(resolved["nodes_to_exclude"])
    nodes = [
        n
        for n in named.graph.node
        if n.op_type in resolved["op_types"]
        and n.op_type in ("MatMul", "Attention")
        and n.name not in excluded
        and len(n.input) > 1
        and n.input[1] in weights
        and len(weights[n.input[1]].dims) == 2
    ]
    if not nodes:
        return []
    probe = onnx.ModelProto()
    probe.CopyFrom(named)
    outputs = {o.name for o in probe.graph.output}
    for name in dict.fromkeys(n.input[0] for n in nodes):
        if name not in outputs:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sums: dict[str, list[float]] = {n.name: [] for n in nodes}
    arrays = {n.name: onnx.numpy_helper.to_array(weights[n.input[1]]).astype(np.float32) for n in nodes}
    mask = comparison.mask if comparison is not None else None
    for feed, got in _run_on_calibration(probe, ctx, batches):
        keep = mask.keep(feed) if mask is not None else None
        for node in nodes:
            x = np.asarray(got[node.input[0]], dtype=np.float32)
            rows = keep if keep is not None and x.ndim == 3 and x.shape[:2] == keep.shape else None
            sums[node.name].append(_dynamic_product_error(x, arrays[node.name], resolved, rows))
    ranking = [LayerError(n.name, n.op_type, float(np.mean(sums[n.name]))) for n in nodes if sums[n.name]]
    ranking.sort(key=lambda e: (-e.error, e.node))
    return ranking


_PRODUCT_ROWS = 256


def _dynamic_product_error(
    x: np.ndarray[Any, Any],
    w: np.ndarray[Any, Any],
    params: Mapping[str, Any],
    rows: np.ndarray[Any, Any] | None = None,
) -> float:
    """||Q(x) Q(w) - x w|| / ||x w|| with ONNX Runtime's dynamic INT8 rounding of ``x`` and ``w``.

    The activation's range comes from all of ``x`` (as at run time); the products use the rows ``rows``
    selects ([batch, seq] booleans over a [batch, seq, features] ``x``; all when None), at most
    ``_PRODUCT_ROWS`` evenly spaced ones, which keeps ranking a large model to seconds.
    """
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    x = x[rows] if rows is not None and rows.any() else x.reshape(-1, x.shape[-1])
    if x.shape[0] > _PRODUCT_ROWS:
        x = x[np.linspace(0, x.shape[0] - 1, _PRODUCT_ROWS).astype(np.int64)]
    scale = (high - low) / 255.0 or 1.0
    zero = np.clip(np.round(-low / scale), 0, 255)
    xq = (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale
    bits = 7 if params["reduce_range"] else 8
    axis = 0 if params["per_channel"] else None  # one scale per output column of a [K, N] weight
    if params["weight_type"] == "int8":
        top = 2 ** (bits - 1) - 1
        absmax = np.max(np.abs(w), axis=axis, keepdims=True)
        wscale = np.where(absmax > 0, absmax / top, 1.0)
        wq = np.clip(np.round(w / wscale), -top - 1, top) * wscale
    else:
        top = 2**bits - 1
        wlow = np.minimum(np.min(w, axis=axis, keepdims=True), 0.0)
        whigh = np.maximum(np.max(w, axis=axis, keepdims=True), 0.0)
        wscale = np.where(whigh > wlow, (whigh - wlow) / top, 1.0)
        wzero = np.clip(np.round(-wlow / wscale), 0, top)
        wq = (np.clip(np.round(w / wscale) + wzero, 0, top) - wzero) * wscale
    want = x @ w
    return float(np.linalg.norm(xq @ wq - want) / max(float(np.linalg.norm(want)), 1e-12))


def sensitive_layer_fallback(
    model: onnx.ModelProto,
    params: Mapping[str, Any] | None,
    ctx: PassContext,
    accept: Callable[[onnx.ModelProto], bool],
    *,
    pass_name: str = "int8-static",
    max_excluded: int | None = None,
    batches: int = 4,
    full_rejected: bool = False,
    comparison: Comparison | None = None,
) -> FallbackResult:
    """INT8 (``pass_name``: ``int8-static`` or ``int8-dynamic``) with the fewest sensitive nodes kept in float
    such that ``accept(model)`` holds.

    Tries full INT8 first (unless the caller says ``full_rejected``: its gate already refused it); when
    ``accept`` refuses it, ranks nodes (:func:`rank_sensitivity` or :func:`rank_dynamic_sensitivity`, on
    ``batches`` calibration batches) and keeps the worst ``k`` in float for the smallest ``k`` (up to
    ``max_excluded``, and always fewer than the ranked nodes, so something stays quantized) that ``accept``
    holds for, found by doubling ``k`` and then
    bisecting. ``accept`` raising a honed error counts as a refusal. ``comparison`` is the gate's
    :class:`~honed.evaluate.comparison.Comparison` (``accept`` judges with it): static ranking scores layers
    the same way. Raises :class:`PassError` when the model cannot be quantized at all.
    """
    if pass_name not in FALLBACK_PASSES:
        raise PassError(f"the sensitive-layer fallback works on {' and '.join(FALLBACK_PASSES)}, not {pass_name}")
    dynamic = pass_name == "int8-dynamic"
    resolved = (Int8DynamicPass() if dynamic else Int8StaticPass()).resolve(params, ctx)
    prepared = model if dynamic else prepare(model, ctx, preprocess=resolved["preprocess"])
    base_excluded = tuple(resolved["nodes_to_exclude"])
    with scratch_dir(ctx) as folder:
        cache = folder / "calibration.json"

        def build(extra: tuple[str, ...]) -> tuple[onnx.ModelProto, dict[str, Any]]:
            values = dict(resolved, nodes_to_exclude=base_excluded + extra)
            if dynamic:
                return Int8DynamicPass().run(prepared, values, ctx), values
            return quantize_prepared(prepared, values, ctx, calibration_cache=cache), values

        tried = 0
        if not full_rejected:
            current, values = build(())
            tried = 1
            if _accepts(accept, current):
                return FallbackResult(current, values, (), True, [], tried)
        if dynamic:
            ranking = rank_dynamic_sensitivity(model, resolved, ctx, batches=batches, comparison=comparison)
        else:
            ranking = rank_sensitivity(
                model,
                resolved,
                ctx,
                batches=batches,
                prepared=prepared,
                calibration_cache=cache,
                comparison=comparison,
            )
        # at least one ranked node stays quantized: keeping them all in float is the original model again
        limit = max(len(ranking) - 1, 0) if max_excluded is None else min(max_excluded, len(ranking) - 1)
        limit = max(limit, 0)
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
            if not built:  # nothing ranked: the full INT8 model is all there is
                model_, values_ = build(())
                return FallbackResult(model_, values_, (), False, ranking, tried + 1)
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
