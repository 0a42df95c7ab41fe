"""Estimated floating-point work of one inference: :func:`count_flops` and its result, :class:`FlopCount`.

The rule: an op that multiplies and accumulates counts **2 FLOPs per multiply-accumulate** (MACs x 2),
plus **1 FLOP per output element for a bias add** fused into it. These ops are counted:

- ``Conv``, ``ConvInteger``, ``QLinearConv``: output elements x (input channels / group) x kernel size
  (strides, padding and dilations act through the inferred output shape); bias when given.
- ``ConvTranspose``: input elements x (output channels / group) x kernel size; bias when given.
- ``MatMul``, ``MatMulInteger``, ``QLinearMatMul``, ``com.microsoft.FusedMatMul``: numpy matmul semantics
  (1-D operands, broadcast batch dimensions), so attention's Q·K^T and attn·V MatMul pairs count in full.
- ``Gemm``: M x N x K with ``transA``/``transB``; ``alpha``/``beta`` scaling is not counted, the bias ``C`` is.

Everything else is **not** in ``total``: ops that only move or reshape data (Reshape, Transpose, Slice,
Concat, Gather, Cast, ...) cost no FLOPs; every other op with arithmetic (elementwise, reductions, pooling,
softmax, normalisation, control flow, custom-domain ops) is listed in :attr:`FlopCount.uncounted_ops` with
its node count, so a reader sees what the figure leaves out. For convolutional and transformer models the
MAC-based ops dominate, which is why the figure compares well against a machine's peak FLOP/s.

Shapes come from ONNX shape inference (with data propagation) on a light copy of the model whose inputs
are fixed to the given shapes; weights are not copied, so a multi-GB model costs little. When inference
fails the count falls back to a lenient pass and to the shapes the model declares, says so in
:attr:`FlopCount.notes`, and lists each node whose shapes stay unknown among the uncounted ops.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx
from onnx import helper, shape_inference

from honed.fields import as_dict
from honed.model.loader import model_io
from honed.model.spec import concrete_shapes

_DEFAULT_DOMAINS = ("", "ai.onnx")

_SMALL_TENSOR = 4096
"""Initializers up to this many elements keep their values in the copy used for shape inference,
so shape tensors (Reshape targets, Slice bounds) still propagate; larger ones travel as dims only."""

_ZERO_COST = frozenset(
    {
        "Cast",
        "CastLike",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "DepthToSpace",
        "Dropout",
        "Expand",
        "EyeLike",
        "Flatten",
        "Gather",
        "GatherElements",
        "GatherND",
        "Identity",
        "Pad",
        "Range",
        "Reshape",
        "Shape",
        "Size",
        "Slice",
        "SpaceToDepth",
        "Split",
        "Squeeze",
        "Tile",
        "Transpose",
        "Unsqueeze",
    }
)
"""Ops that move, copy or describe data without arithmetic on it."""

Shape = tuple[int, ...]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one inference for one set of input shapes (see the module docstring for the rule)."""

    total: int
    """FLOPs of the counted ops: MACs x 2, plus bias adds."""
    by_op_type: dict[str, int] = field(default_factory=dict)
    """FLOPs per counted op type (``domain.OpType`` outside the default domain)."""
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    """Op types with arithmetic that ``total`` leaves out -> number of such nodes."""
    notes: tuple[str, ...] = ()
    """What limited the count, e.g. shape inference that failed."""

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "gflops": self.gflops} | as_dict(self)


def op_key(node: onnx.NodeProto) -> str:
    """``Conv`` for the default domain, ``com.microsoft.FusedMatMul`` otherwise."""
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"


def count_flops(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None) -> FlopCount:
    """Estimate the FLOPs of one inference of ``model`` with its inputs at ``shapes``.

    ``shapes`` maps input names to fixed shapes; inputs it leaves out get
    :func:`honed.model.concrete_shapes`' defaults (symbolic dims -> 1), and unknown names or wrong ranks
    raise :class:`honed.errors.InvalidArgument`.
    """
    inputs, _ = model_io(model)
    fixed = concrete_shapes(inputs, shapes)
    known, notes = _infer(model, fixed)

    by_op: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    for node in model.graph.node:
        key = op_key(node)
        counter = _COUNTERS.get(key)
        if counter is None:
            if not (node.domain in _DEFAULT_DOMAINS and node.op_type in _ZERO_COST):
                uncounted[key] += 1
            continue
        in_shapes = [known.get(name) if name else None for name in node.input]
        out_shapes = [known.get(name) for name in node.output]
        flops = counter(node, in_shapes, out_shapes)
        if flops is None:
            uncounted[key] += 1
        else:
            by_op[key] += flops
    if any(_COUNTERS.get(k) for k in uncounted):
        notes.append("some MAC-based nodes have unknown shapes and are not in the total; give --shape for them")
    return FlopCount(
        total=sum(by_op.values()),
        by_op_type=dict(by_op.most_common()),
        uncounted_ops=dict(uncounted.most_common()),
        notes=tuple(notes),
    )


def _light_copy(model: onnx.ModelProto, fixed: dict[str, Shape]) -> onnx.ModelProto:
    """The model without its large weights (dims kept) and with its inputs fixed to ``fixed``."""
    graph = model.graph
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    g = light.graph
    g.name = graph.name
    g.node.extend(graph.node)
    g.output.extend(graph.output)
    g.value_info.extend(graph.value_info)
    g.sparse_initializer.extend(graph.sparse_initializer)
    for init in graph.initializer:
        if math.prod(init.dims) <= _SMALL_TENSOR:
            g.initializer.append(init)
        else:
            g.initializer.append(onnx.TensorProto(name=init.name, data_type=init.data_type, dims=init.dims))
    for value in graph.input:
        if value.name in fixed and value.type.HasField("tensor_type"):
            g.input.append(
                helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type, list(fixed[value.name]))
            )
        else:
            g.input.append(value)
    return light


def _infer(model: onnx.ModelProto, fixed: dict[str, Shape]) -> tuple[dict[str, Shape], list[str]]:
    """Every fully known tensor shape, and notes on what went wrong."""
    light = _light_copy(model, fixed)
    notes: list[str] = []
    inferred = light
    try:
        inferred = shape_inference.infer_shapes(light, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        notes.append(f"ONNX shape inference failed ({first}); FLOPs counted only where shapes are known")
        try:
            inferred = shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError):
            notes.append("lenient shape inference failed too; using only the shapes the model declares")
    known: dict[str, Shape] = {}
    for init in inferred.graph.initializer:
        known[init.name] = tuple(int(d) for d in init.dims)
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shape = _fixed_shape(value)
        if shape is not None:
            known[value.name] = shape
    return known, notes


def _fixed_shape(value: onnx.ValueInfoProto) -> Shape | None:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _broadcast(a: Shape, b: Shape) -> Shape | None:
    out: list[int] = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + a), reversed((1,) * (len(a) - len(b)) + b), strict=True):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(reversed(out))


def _matmul_macs(a: Shape | None, b: Shape | None, trans_a: bool = False, trans_b: bool = False) -> int | None:
    """MACs of numpy-style matmul: 1-D operands promoted, batch dimensions broadcast."""
    if a is None or b is None or not a or not b:
        return None
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if trans_a:
        a2 = (*a2[:-2], a2[-1], a2[-2])
    if trans_b:
        b2 = (*b2[:-2], b2[-1], b2[-2])
    m, k = a2[-2], a2[-1]
    k2, n = b2[-2], b2[-1]
    batch = _broadcast(a2[:-2], b2[:-2])
    if k != k2 or batch is None:
        return None
    return math.prod(batch) * m * n * k


def _count_matmul(a_index: int, b_index: int) -> Any:
    def count(node: onnx.NodeProto, ins: Sequence[Shape | None], outs: Sequence[Shape | None]) -> int | None:
        if len(ins) <= max(a_index, b_index):
            return None
        macs = _matmul_macs(ins[a_index], ins[b_index])
        return None if macs is None else 2 * macs

    return count


def _count_fused_matmul(node: onnx.NodeProto, ins: Sequence[Shape | None], outs: Sequence[Shape | None]) -> int | None:
    if _attr(node, "transBatchA", 0) or _attr(node, "transBatchB", 0) or len(ins) < 2:
        return None
    macs = _matmul_macs(ins[0], ins[1], bool(_attr(node, "transA", 0)), bool(_attr(node, "transB", 0)))
    return None if macs is None else 2 * macs


def _count_gemm(node: onnx.NodeProto, ins: Sequence[Shape | None], outs: Sequence[Shape | None]) -> int | None:
    a, b = ins[0], ins[1]
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if _attr(node, "transA", 0) else a
    k2, n = (b[1], b[0]) if _attr(node, "transB", 0) else b
    if k != k2:
        return None
    bias = m * n if len(ins) > 2 and node.input[2] else 0
    return 2 * m * n * k + bias


def _count_conv(w_index: int, bias_index: int | None) -> Any:
    def count(node: onnx.NodeProto, ins: Sequence[Shape | None], outs: Sequence[Shape | None]) -> int | None:
        w = ins[w_index] if len(ins) > w_index else None
        y = outs[0] if outs else None
        if w is None or y is None or len(w) < 2:
            return None
        macs = math.prod(y) * math.prod(w[1:])  # w: (M, C/group, *kernel)
        has_bias = bias_index is not None and len(ins) > bias_index and bool(node.input[bias_index])
        return 2 * macs + (math.prod(y) if has_bias else 0)

    return count


def _count_conv_transpose(
    node: onnx.NodeProto, ins: Sequence[Shape | None], outs: Sequence[Shape | None]
) -> int | None:
    x, w = ins[0], ins[1]
    y = outs[0] if outs else None
    if x is None or w is None or y is None or len(w) < 2:
        return None
    # Each input element scatters into (M/group) x kernel outputs; w: (C, M/group, *kernel).
    macs = math.prod(x) * math.prod(w[1:])
    has_bias = len(ins) > 2 and bool(node.input[2])
    return 2 * macs + (math.prod(y) if has_bias else 0)


_COUNTERS: dict[str, Any] = {
    "Conv": _count_conv(1, 2),
    "ConvInteger": _count_conv(1, None),
    "QLinearConv": _count_conv(3, 8),
    "ConvTranspose": _count_conv_transpose,
    "MatMul": _count_matmul(0, 1),
    "MatMulInteger": _count_matmul(0, 1),
    "QLinearMatMul": _count_matmul(0, 3),
    "Gemm": _count_gemm,
    "com.microsoft.FusedMatMul": _count_fused_matmul,
}
