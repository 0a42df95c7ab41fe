"""Fuse unfused self-attention blocks into ONNX Runtime's ``MultiHeadAttention`` contrib op.

ONNX Runtime's transformer optimizer recognises the attention subgraph of classic (eager) BERT exports only.
Exports of ``scaled_dot_product_attention`` (transformers' default attention since 4.36) look different: the
scale is split as sqrt(scale) over Q and K, the mask is a boolean tensor turned into ``Where(mask, 0, -inf)``,
and a ``Where(IsNaN(p), 0, p)`` guard follows the Softmax. Those blocks stay as a dozen element-wise ops over
``[batch, heads, seq, seq]`` tensors, which at batch 32 cost as much as the INT8 matrix products around them.

:func:`fuse_attention` matches, for each Softmax left in the graph::

    q = Transpose(Reshape(Q, [.., .., heads, head_size]), 0213)        Q, K, V: [batch, seq, hidden]
    k = Transpose(Reshape(K, ..), 0231)  or  Transpose(Transpose(Reshape(K, ..), 0213), 0132)
    s = MatMul(q * a, k * b) * c [+ bias]                              a, b, c: optional scalar constants
    p = Softmax(s) [then Where(IsNaN(p), 0, p)]
    out = Reshape(Transpose([Reshape](MatMul(p, v)), 0213), ..)       v like q

and replaces ``out``'s producer with ``MultiHeadAttention(Q, K, V, attention_bias=bias, scale=a*b*c)``. The
bias is broadcast to ``[batch or 1, 1, seq, seq]`` (the kernel needs the last two dimensions in full), and a
``-inf`` masking constant becomes float32's lowest value: a row whose every key is masked (an all-padding
sequence) then averages the values where the exported graph returned zeros; every other row is unchanged.
Blocks that do not match exactly are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from honed.passes._graph import opset

_HEADS_PERM = (0, 2, 1, 3)
_KEY_PERM = (0, 2, 3, 1)
_SWAP_LAST = (0, 1, 3, 2)
_LOWEST = float(np.finfo(np.float32).min)


@dataclass
class _Block:
    query: str
    key: str
    value: str
    heads: int
    scale: float
    bias: str | None
    merge: onnx.NodeProto  # the Reshape whose output the fused node produces


class _Graph:
    """Read-only lookups over one graph: producers, consumers and constant values."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}
        self.values = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.values[node.output[0]] = node.attribute[0].t

    def const(self, name: str) -> np.ndarray | None:
        tensor = self.values.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def scalar(self, name: str) -> float | None:
        value = self.const(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def made_by(self, name: str, op_type: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_user(self, name: str, op_type: str, ignore: tuple[str, ...] = ()) -> onnx.NodeProto | None:
        if name in self.outputs:
            return None
        users = [u for u in self.consumers.get(name, []) if u.op_type not in ignore]
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _perm(node: onnx.NodeProto) -> tuple[int, ...]:
    return next((tuple(a.ints) for a in node.attribute if a.name == "perm"), ())


def _strip_scales(g: _Graph, name: str) -> tuple[str, float]:
    """Follow Mul/Div by scalar constants back from ``name``; returns the unscaled tensor and the product."""
    scale = 1.0
    while (node := g.producer.get(name)) is not None and node.op_type in ("Mul", "Div"):
        factors = [g.scalar(i) for i in node.input]
        if node.op_type == "Mul" and factors[1] is not None:
            name, scale = node.input[0], scale * factors[1]
        elif node.op_type == "Mul" and factors[0] is not None:
            name, scale = node.input[1], scale * factors[0]
        elif node.op_type == "Div" and factors[1] not in (None, 0.0):
            name, scale = node.input[0], scale / float(factors[1])
        else:
            break
    return name, scale


def _heads_of(g: _Graph, reshape: onnx.NodeProto) -> int:
    """The head count of a ``[batch, seq, heads, head_size]`` Reshape target (constant or a Concat), or 0.

    A ``-1`` head count (SDPA exports) is the projection's width over the head size; the width is read from the
    projection's weight (``MatMul(x, W)`` with an optional bias ``Add``).
    """
    dims = _target_dims(g, reshape)
    if len(dims) != 4:
        return 0
    heads, size = dims[2], dims[3]
    if heads > 0:
        return heads
    width = _projection_width(g, reshape.input[0])
    return width // size if heads == -1 and size > 0 and width % size == 0 else 0


def _target_dims(g: _Graph, reshape: onnx.NodeProto) -> list[int]:
    """A Reshape's target shape as far as constants tell it (0 for a part computed at run time)."""
    if len(reshape.input) < 2:
        return []
    shape = g.const(reshape.input[1])
    if shape is not None:
        return [int(d) for d in shape.reshape(-1)]
    concat = g.made_by(reshape.input[1], "Concat")
    parts = [g.const(i) for i in concat.input] if concat is not None else []
    return [int(p.reshape(-1)[0]) if p is not None and p.size == 1 else 0 for p in parts]


def detect_heads(model: onnx.ModelProto) -> tuple[int, int]:
    """(heads, hidden size) from the most common head-splitting Reshape (``[.., .., heads, head_size]``), or (0, 0).

    Reads constant targets and Concat-built ones (torch exports with dynamic batch and sequence), with a ``-1``
    head count resolved from the projection's weight.
    """
    g = _Graph(model.graph)
    found: dict[tuple[int, int], int] = {}
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        dims = _target_dims(g, node)
        heads = _heads_of(g, node) if len(dims) == 4 and dims[3] > 0 else 0
        if heads > 0:
            key = (heads, heads * dims[3])
            found[key] = found.get(key, 0) + 1
    if not found:
        return 0, 0
    return max(sorted(found), key=lambda k: found[k])


def _projection_width(g: _Graph, name: str) -> int:
    """The output width of ``[Add](MatMul(x, W), b)``, from W's last dimension, or 0."""
    node = g.producer.get(name)
    if node is not None and node.op_type == "Add":
        node = next((g.producer[i] for i in node.input if i in g.producer and g.producer[i].op_type == "MatMul"), None)
    if node is None or node.op_type != "MatMul":
        return 0
    weight = g.values.get(node.input[1])
    return int(weight.dims[-1]) if weight is not None and len(weight.dims) == 2 else 0


def _keeps_heads_layout(g: _Graph, reshape: onnx.NodeProto, heads: int) -> bool:
    """Whether a Reshape of the ``[batch, heads, seq, size]`` context keeps that layout: a 4-D target whose second
    dimension is the head count, or left open (computed at run time, or -1) while the third is not the head count."""
    dims = _target_dims(g, reshape)
    if len(dims) != 4:
        return False
    return dims[1] == heads or (dims[1] in (0, -1) and dims[2] != heads)


def _split(g: _Graph, name: str, perms: tuple[tuple[int, ...], ...]) -> tuple[str, int] | None:
    """``name`` = Transpose chain ``perms`` over Reshape(X, [.., .., heads, size]): returns (X, heads)."""
    for perm in reversed(perms):
        node = g.made_by(name, "Transpose")
        if node is None or _perm(node) != perm:
            return None
        name = node.input[0]
    reshape = g.made_by(name, "Reshape")
    if reshape is None:
        return None
    return reshape.input[0], _heads_of(g, reshape)


def _match(g: _Graph, softmax: onnx.NodeProto, opset: int) -> _Block | None:
    # before opset 13 Softmax flattens from ``axis`` (default 1); from the last axis of 4-D scores it is the same
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1 if opset >= 13 else 1)
    if axis not in (-1, 3):
        return None
    probs = softmax.output[0]
    users = g.consumers.get(probs, [])
    if probs in g.outputs:
        return None
    if len(users) == 2 and {u.op_type for u in users} == {"IsNaN", "Where"}:  # the SDPA guard for empty rows
        isnan = next(u for u in users if u.op_type == "IsNaN")
        where = next(u for u in users if u.op_type == "Where")
        if list(where.input) != [isnan.output[0], where.input[1], probs] or g.scalar(where.input[1]) != 0.0:
            return None
        probs = where.output[0]
    context = g.only_user(probs, "MatMul")
    if context is None or context.input[0] != probs:
        return None
    merged = context.output[0]
    same = g.only_user(merged, "Reshape", ignore=("Shape",))  # SDPA exports reshape the output to its own shape
    if same is not None:
        merged = same.output[0]
    merge_t = g.only_user(merged, "Transpose")
    merge = g.only_user(merge_t.output[0], "Reshape") if merge_t is not None else None
    if merge_t is None or merge is None or _perm(merge_t) != _HEADS_PERM:
        return None

    scores, scale = _strip_scales(g, softmax.input[0])
    bias = None
    add = g.made_by(scores, "Add")
    if add is not None:
        for i in (0, 1):
            inner, inner_scale = _strip_scales(g, add.input[i])
            if g.made_by(inner, "MatMul") is not None and add.input[1 - i] not in g.values:
                scores, scale, bias = inner, scale * inner_scale, add.input[1 - i]
                break
        else:
            return None
    product = g.made_by(scores, "MatMul")
    if product is None:
        return None
    q_name, q_scale = _strip_scales(g, product.input[0])
    k_name, k_scale = _strip_scales(g, product.input[1])
    query = _split(g, q_name, (_HEADS_PERM,))
    key = _split(g, k_name, (_KEY_PERM,)) or _split(g, k_name, (_HEADS_PERM, _SWAP_LAST))
    value = _split(g, context.input[1], (_HEADS_PERM,))
    if query is None or key is None or value is None:
        return None
    heads = {h for _, h in (query, key, value) if h}
    if len(heads) != 1:
        return None
    count = heads.pop()
    if same is not None and not _keeps_heads_layout(g, same, count):
        return None
    return _Block(query[0], key[0], value[0], count, scale * q_scale * k_scale, bias, merge)


def _finite(g: _Graph, bias: str, added: list[onnx.NodeProto], fresh: Iterator[str]) -> str:
    """``bias``, or a copy of its ``Where(cond, x, -inf)`` producer with float32's lowest value instead."""
    where = g.made_by(bias, "Where")
    if where is None:
        return bias
    branches = [g.const(i) for i in where.input[1:]]
    if not any(b is not None and b.size == 1 and np.isneginf(b).all() for b in branches):
        return bias
    inputs = [where.input[0]]
    for name, value in zip(where.input[1:], branches, strict=True):
        if value is not None and value.size == 1 and np.isneginf(value).all():
            name = next(fresh)
            g.graph.initializer.append(numpy_helper.from_array(np.full(value.shape, _LOWEST, value.dtype), name))
        inputs.append(name)
    out = next(fresh)
    added.append(helper.make_node("Where", inputs, [out], name=out))
    return out


def _broadcast_bias(g: _Graph, bias: str, block: _Block, added: list[onnx.NodeProto], fresh: Iterator[str]) -> str:
    """Expand ``bias`` to ``[.., .., seq, total_seq]`` (broadcasting keeps its first two dimensions)."""
    ones, one, two = next(fresh), next(fresh), next(fresh)
    g.graph.initializer.extend(
        [
            numpy_helper.from_array(np.ones(2, np.int64), ones),
            numpy_helper.from_array(np.array([1], np.int64), one),
            numpy_helper.from_array(np.array([2], np.int64), two),
        ]
    )
    dims = []
    for source in (block.query, block.key):
        shape, dim = next(fresh), next(fresh)
        added.append(helper.make_node("Shape", [source], [shape], name=shape))
        added.append(helper.make_node("Slice", [shape, one, two], [dim], name=dim))
        dims.append(dim)
    target, out = next(fresh), next(fresh)
    added.append(helper.make_node("Concat", [ones, *dims], [target], name=target, axis=0))
    added.append(helper.make_node("Expand", [bias, target], [out], name=out))
    return out


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers nothing reads any more (graph outputs and subgraphs count as readers)."""

    def reads(node: onnx.NodeProto) -> Iterator[str]:
        yield from node.input
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                for inner in sub.node:
                    yield from reads(inner)

    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(reads(node))
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    for tensor in [t for t in graph.initializer if t.name not in needed]:
        graph.initializer.remove(tensor)
    produced = {o for n in graph.node for o in n.output}
    for info in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(info)


def fuse_attention(model: onnx.ModelProto) -> int:
    """Rewrite every matching attention block of ``model`` (in place); returns how many were fused."""
    graph = model.graph
    g = _Graph(graph)
    version = opset(model)
    blocks = [b for b in (_match(g, n, version) for n in graph.node if n.op_type == "Softmax") if b is not None]
    if not blocks:
        return 0
    fresh = (f"honed_attention_{i}" for i in range(1 << 30))
    order = list(graph.node)
    finite: dict[str, str] = {}
    for block in blocks:
        added: list[onnx.NodeProto] = []
        inputs = [block.query, block.key, block.value]
        if block.bias is not None:
            if block.bias not in finite:  # layers usually share one mask: make it finite once
                finite[block.bias] = _finite(g, block.bias, added, fresh)
            bias = finite[block.bias]
            inputs += ["", "", _broadcast_bias(g, bias, block, added, fresh)]
        name = next(fresh)
        added.append(
            helper.make_node(
                "MultiHeadAttention",
                inputs,
                list(block.merge.output),
                name=name,
                domain="com.microsoft",
                num_heads=block.heads,
                scale=block.scale,
            )
        )
        at = order.index(block.merge)
        order[at : at + 1] = added
    del graph.node[:]
    graph.node.extend(order)
    _prune(graph)
    return len(blocks)
