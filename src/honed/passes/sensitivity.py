"""Sensitive-layer fallback for INT8 (static and dynamic): keep the layers that hurt accuracy most in float.

Static INT8: :func:`rank_sensitivity` runs the quantizer once, then scores each quantized node by what the
model's outputs lose when that node alone is quantized: the float graph with only that node's
QuantizeLinear/DequantizeLinear chains from the full INT8 model copied in front of it, run on a few
calibration batches. No quantizer run per node, and damage that only shows downstream (a variance computed as
E[x^2] - E[x]^2) counts.

Dynamic INT8: rebuilding the model once per node would cost one quantizer run per MatMul, so
:func:`rank_dynamic_sensitivity` instead captures each weighted node's float input on calibration batches (one
FP32 run) and computes, in numpy, how far the node's own product moves when its activation and weight are
quantized the way ONNX Runtime's dynamic scheme does (uint8 per-tensor activations, int8 weights, per
channel or not, 7-bit with ``reduce_range``).

:func:`sensitive_layer_fallback` then excludes the worst nodes from quantization, the fewest for which the
caller's ``accept(model)`` (an accuracy gate) holds, found by a binary search over the ranked list: at most
:func:`fallback_evaluations` models are judged, ``O(log n)`` for ``n`` ranked nodes. The result's ``params``
are the pass's parameters with ``nodes_to_exclude`` filled in: running the pass (``int8-static`` or
``int8-dynamic``) with them on the same model gives the same bytes, so a recipe can replay it.
"""

from __future__ import annotations

import math
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
    quantized: onnx.ModelProto | None = None,
) -> list[LayerError]:
    """Every node the full static INT8 model quantizes, with the output error its own quantization causes,
    worst first (ties by name).

    A node's error is the relative error of the model's outputs (scored the way ``comparison`` compares:
    padded positions left out) when that node alone is quantized: the float model with only the
    QuantizeLinear/DequantizeLinear chains that feed that node in the full INT8 model (``quantized``, built
    here when not given) copied in front of it (:func:`_isolated`). So what a node's rounding does downstream
    counts (a variance computed as E[x^2] - E[x]^2 turns 1% of noise in E[x^2] into far more), not only its
    local noise. The cost is one quantizer run and, per node, a session of a graph that is float but for one
    node, run on ``batches`` calibration batches: no quantizer run per node."""
    resolved = Int8StaticPass().resolve(params, ctx)
    prepared = prepared if prepared is not None else prepare(model, ctx, preprocess=resolved["preprocess"])
    with scratch_dir(ctx) as folder:
        if quantized is None:
            cache = calibration_cache or folder / "calibration.json"
            quantized = quantize_prepared(prepared, resolved, ctx, calibration_cache=cache)
        nodes = _quantized_nodes(prepared, quantized, resolved)
    if not nodes:
        return []
    reference = ReferenceOutputs(prepared, ctx, batches, comparison)
    ranking = []
    for n in nodes:
        try:
            error = reference.error(_isolated(prepared, quantized, n))
        except HonedError:
            error = math.inf  # a node whose quantized form does not even run is the worst kind
        ranking.append(LayerError(n.node.name, n.node.op_type, error))
    ranking.sort(key=lambda e: (-e.error, e.node))
    return ranking


@dataclass(frozen=True)
class _QuantizedNode:
    """A node of the prepared model that the INT8 model quantizes: its float input and output tensors (names
    both models share) and each ``(DequantizeLinear output, the float tensor or weight it stands for)``."""

    node: onnx.NodeProto
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dequantized: tuple[tuple[str, str], ...]


def _quantized_nodes(
    prepared: onnx.ModelProto, quantized: onnx.ModelProto, resolved: Mapping[str, Any]
) -> list[_QuantizedNode]:
    """Each node of ``prepared`` that ``quantized`` feeds through a DequantizeLinear (inputs traced back through
    their QuantizeLinear/DequantizeLinear pair; a graph output the quantizer renamed traced forward to it; a
    fused activation's output stands for its node's)."""
    wanted = set(resolved["op_types"]) or set(RANKED_OPS)
    excluded = set(resolved["nodes_to_exclude"])
    original = {n.name: n for n in prepared.graph.node if n.op_type in wanted and n.name not in excluded}
    weights = {t.name for t in prepared.graph.initializer}
    shared = {o for n in prepared.graph.node for o in n.output} | {i.name for i in prepared.graph.input}
    shared -= weights
    producer = {o: n for n in quantized.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in quantized.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    def source(tensor: str, known: set[str]) -> str | None:
        while tensor not in known and tensor in producer and producer[tensor].op_type in _QDQ:
            tensor = producer[tensor].input[0]
        if tensor not in known and tensor.removesuffix(_QUANTIZED) in known:
            return tensor.removesuffix(_QUANTIZED)  # a weight the quantizer stored quantized
        return tensor if tensor in known else None

    def target(tensor: str) -> str | None:
        while tensor not in shared and len(users := consumers.get(tensor, [])) == 1 and users[0].op_type in _QDQ:
            tensor = users[0].output[0]
        return tensor if tensor in shared else None

    found = []
    for node in quantized.graph.node:
        dequantized = tuple(
            (i, src)
            for i in node.input
            if i in producer
            and producer[i].op_type == "DequantizeLinear"
            and (src := source(i, shared | weights)) is not None
        )
        if node.name not in original or not dequantized:
            continue  # not ranked, or left in float by the quantizer
        ins = tuple(dict.fromkeys(s for i in node.input if i and (s := source(i, shared)) is not None))
        outs = tuple(t for o in node.output if (t := target(o)) is not None)
        found.append(_QuantizedNode(original[node.name], ins, outs, dequantized))
    return found


_QDQ = ("QuantizeLinear", "DequantizeLinear")
_QUANTIZED = "_quantized"  # ONNX Runtime's name for a weight's quantized initializer


def _isolated(prepared: onnx.ModelProto, quantized: onnx.ModelProto, node: _QuantizedNode) -> onnx.ModelProto:
    """``prepared`` (float) with only ``node``'s inputs quantized as ``quantized`` quantizes them: the chains of
    QuantizeLinear/DequantizeLinear nodes (and their scales, zero points and quantized weights) that feed the
    node in the INT8 model, copied in front of it."""
    producer = {o: n for n in quantized.graph.node for o in n.output}
    constants = {t.name: t for t in quantized.graph.initializer}
    have = {t.name for t in prepared.graph.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(prepared)
    chain: list[onnx.NodeProto] = []
    needed: list[str] = []
    for dq, _src in node.dequantized:
        stack, seen = [dq], set()
        while stack:
            tensor = stack.pop()
            step = producer.get(tensor)
            if step is None or step.op_type not in _QDQ or step.name in seen:
                if tensor in constants and tensor not in have:
                    needed.append(tensor)
                continue
            seen.add(step.name)
            chain.append(step)
            stack.extend(i for i in step.input if i)
    target = next(n for n in probe.graph.node if n.name == node.node.name)
    inputs = next(n for n in quantized.graph.node if n.name == node.node.name).input
    wired = {dq for dq, _ in node.dequantized}
    for position, name in enumerate(inputs):
        if name in wired and position < len(target.input):
            target.input[position] = name
    # the chain runs before its consumer: put it at the front, in dependency order (sources first)
    copies = []
    for step in reversed(chain):
        copy = onnx.NodeProto()
        copy.CopyFrom(step)
        copies.append(copy)
    index = list(probe.graph.node).index(target)
    for offset, copy in enumerate(copies):
        probe.graph.node.insert(index + offset, copy)
    probe.graph.initializer.extend(constants[n] for n in dict.fromkeys(needed))
    return probe


def _exposing(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` with ``tensors`` among its outputs."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in outputs:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return probe


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
    probe = _exposing(named, list(dict.fromkeys(n.input[0] for n in nodes)))
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


def fallback_evaluations(ranked: int, max_excluded: int | None = None) -> int:
    """The most models :func:`sensitive_layer_fallback` offers to ``accept`` after a rejected full INT8 model,
    for ``ranked`` ranked nodes: the largest exclusion once, then a binary search below it,
    ``1 + ceil(log2(limit))`` with ``limit = min(max_excluded, ranked - 1)``. Ranking itself costs about one
    more (one quantizer run and one float and one INT8 run over a few calibration batches)."""
    limit = exclusion_limit(ranked, max_excluded)
    return 0 if limit < 1 else 1 + math.ceil(math.log2(limit))


def exclusion_limit(ranked: int, max_excluded: int | None) -> int:
    """The most nodes the fallback keeps in float: fewer than the ranked nodes (keeping them all in float is
    the original model again), and at most ``max_excluded``."""
    limit = ranked - 1 if max_excluded is None else min(max_excluded, ranked - 1)
    return max(limit, 0)


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
    ``accept`` refuses it, ranks nodes once (:func:`rank_sensitivity` or :func:`rank_dynamic_sensitivity`, on
    ``batches`` calibration batches) and keeps the worst ``k`` in float for the smallest ``k`` that ``accept``
    holds for: ``k = limit`` first (:func:`exclusion_limit`; when even that is refused, nothing smaller is
    tried), then a binary search below it, so at most :func:`fallback_evaluations` models are judged however
    many nodes the model has. ``accept`` raising a honed error counts as a refusal. ``comparison`` is the
    gate's :class:`~honed.evaluate.comparison.Comparison` (``accept`` judges with it): ranking scores tensors
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
        full: tuple[onnx.ModelProto, dict[str, Any]] | None = None
        if not full_rejected or not dynamic:  # static ranking reads the full INT8 model's tensors
            full = build(())
        if not full_rejected and full is not None:
            tried = 1
            if _accepts(accept, full[0]):
                return FallbackResult(full[0], full[1], (), True, [], tried)
        if dynamic:
            ranking = rank_dynamic_sensitivity(model, resolved, ctx, batches=batches, comparison=comparison)
        else:
            ranking = rank_sensitivity(
                model,
                resolved,
                ctx,
                batches=batches,
                prepared=prepared,
                comparison=comparison,
                quantized=full[0] if full is not None else None,
            )
        limit = exclusion_limit(len(ranking), max_excluded)
        built: dict[int, tuple[onnx.ModelProto, dict[str, Any]]] = {}

        def accepted_at(k: int) -> bool:
            nonlocal tried
            built[k] = build(tuple(e.node for e in ranking[:k]))
            tried += 1
            return _accepts(accept, built[k][0])

        if limit < 1 or not accepted_at(limit):
            # nothing to keep in float, or even the most the fallback may keep is refused
            last = built.get(limit) or full or build(())
            return FallbackResult(
                last[0],
                last[1],
                tuple(e.node for e in ranking[:limit]) if limit in built else (),
                False,
                ranking,
                tried,
            )
        # accuracy grows (nearly) monotonically with k: the smallest accepted k lies in (low, high]
        low, high = 0, limit
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
