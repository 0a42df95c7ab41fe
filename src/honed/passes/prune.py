"""The ``prune`` pass: magnitude pruning (unstructured) or channel pruning of Conv->Conv and MatMul/Gemm chains.

``method=magnitude`` zeroes the smallest-magnitude ``sparsity`` fraction of each weight of the chosen op
types. The file compresses better, but neither ONNX Runtime's CPU provider nor OpenVINO turns unstructured
zeros into speed, so the pass says so in :meth:`PruneGraphPass.skip_reason` on those targets.

``method=channels`` shrinks the computation itself: for a layer ``k`` (Conv with group 1, MatMul or Gemm with a
constant weight) whose output reaches exactly one layer ``k+1`` of the same family, only through per-channel
element-wise ops (bias Add/Mul, Relu, Clip, LeakyRelu, Sigmoid, Tanh, BatchNormalization), it removes the
``sparsity`` fraction of ``k``'s output channels with the lowest L1 weight norm, the matching slices of those
element-wise ops' constants, and the matching input channels of ``k+1``. A chain is left alone when anything
else reads a tensor in it or a constant in it is shared. Without fine-tuning, accuracy usually drops: the
accuracy gate decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import numpy_helper

from honed.passes._graph import first_line
from honed.passes.base import Param, Pass, PassContext, PassError

_ELEMENTWISE = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Add", "Mul", "BatchNormalization")
_WEIGHTED = ("Conv", "MatMul", "Gemm")


class PruneGraphPass(Pass):
    name: ClassVar[str] = "prune"
    description: ClassVar[str] = (
        "magnitude pruning to a target sparsity, or channel pruning of Conv->Conv and MatMul/Gemm chains"
    )
    params: ClassVar[tuple[Param, ...]] = (
        Param(
            "method",
            str,
            "channels",
            "channels (shrinks FLOPs) or magnitude (unstructured zeros)",
            choices=("channels", "magnitude"),
        ),
        Param(
            "sparsity",
            float,
            0.25,
            "fraction of weights (magnitude) or of output channels (channels) removed",
            min=0.0,
            max=0.95,
        ),
        Param("op_types", tuple, ("Conv", "MatMul", "Gemm"), "layer types pruned", choices=_WEIGHTED),
    )
    targets: ClassVar[tuple[str, ...]] = ("onnxruntime/cpu", "onnxruntime/cuda", "onnxruntime/tensorrt", "openvino/cpu")
    tolerance: ClassVar[float | None] = None  # removing weights changes the function; only the accuracy gate can judge

    def skip_for(self, ctx: PassContext, params: Mapping[str, Any] | None, model: onnx.ModelProto | None) -> str | None:
        values = self.validate_params(params)
        if values["method"] == "magnitude":
            return (
                f"unstructured sparsity does not speed up {ctx.target}: zeros are still multiplied "
                "(only the compressed file gets smaller)"
            )
        if model is not None and not _find_chains(model, values["op_types"]):
            return "the model has no Conv->Conv or MatMul/Gemm->MatMul/Gemm chain whose channels can be pruned"
        return None

    def search_space(self, ctx: PassContext) -> list[dict[str, Any]]:
        return [self.resolve({"method": "channels", "sparsity": s}, ctx) for s in (0.125, 0.25, 0.5)]

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        if params["method"] == "magnitude":
            return _magnitude(model, params["sparsity"], params["op_types"])
        return _channels(model, params["sparsity"], params["op_types"])


# -- magnitude -----------------------------------------------------------------------------------------------


def _magnitude(model: onnx.ModelProto, sparsity: float, op_types: tuple[str, ...]) -> onnx.ModelProto:
    inits = {t.name: t for t in model.graph.initializer}
    names = sorted({n.input[1] for n in model.graph.node if n.op_type in op_types and len(n.input) > 1})
    pruned = 0
    for name in names:
        tensor = inits.get(name)
        if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        weight = numpy_helper.to_array(tensor).copy()
        count = int(np.floor(weight.size * sparsity))
        if count == 0:
            continue
        # stable order: ties broken by position, so the result does not depend on the sort algorithm
        order = np.argsort(np.abs(weight).ravel(), kind="stable")
        flat = weight.ravel()
        flat[order[:count]] = 0.0
        tensor.CopyFrom(numpy_helper.from_array(flat.reshape(weight.shape), name))
        pruned += 1
    if not pruned:
        raise PassError(f"the model has no float {'/'.join(op_types)} weight to prune")
    return model


# -- channels ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chain:
    first: str  # node names
    between: tuple[str, ...]
    second: str


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _weight_name(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> str | None:
    if len(node.input) < 2 or node.input[1] not in inits:
        return None
    rank = len(inits[node.input[1]].dims)
    if node.op_type == "Conv":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return node.input[1] if group == 1 and rank >= 3 else None
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        return node.input[1] if trans_a == 0 and rank == 2 else None
    return node.input[1] if rank == 2 else None


def _family(op_type: str) -> str:
    return "conv" if op_type == "Conv" else "dense"


def _find_chains(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[_Chain]:
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    users = _consumers(graph)
    outputs = {o.name for o in graph.output}
    chains: list[_Chain] = []
    for node in graph.node:
        if node.op_type not in op_types or _weight_name(node, inits) is None:
            continue
        between: list[str] = []
        tensor = node.output[0]
        while True:
            nexts = users.get(tensor, [])
            if tensor in outputs or len(nexts) != 1:
                break
            nxt = nexts[0]
            if nxt.op_type in _ELEMENTWISE:
                if any(i != tensor and i not in inits for i in nxt.input if i):
                    break  # e.g. a residual Add: another path reads these channels
                if any(len(users.get(i, [])) != 1 for i in nxt.input if i in inits):
                    break  # a shared constant cannot be sliced for one chain only
                between.append(nxt.name)
                tensor = nxt.output[0]
                continue
            if (
                nxt.op_type in op_types
                and _family(nxt.op_type) == _family(node.op_type)
                and nxt.input[0] == tensor
                and _weight_name(nxt, inits) is not None
                and len(users.get(nxt.input[1], [])) == 1
                and len(users.get(node.input[1], [])) == 1
            ):
                chains.append(_Chain(node.name, tuple(between), nxt.name))
            break
    return chains


def _channels(model: onnx.ModelProto, sparsity: float, op_types: tuple[str, ...]) -> onnx.ModelProto:
    from honed.passes._quant import ensure_node_names

    ensure_node_names(model)
    chains = _find_chains(model, op_types)
    if not chains:
        raise PassError("the model has no Conv->Conv or MatMul/Gemm->MatMul/Gemm chain whose channels can be pruned")
    changed = 0
    for chain in chains:  # graph order; a later chain sees the earlier one's slices
        changed += _prune_chain(model, chain, sparsity)
    if not changed:
        raise PassError(f"sparsity {sparsity} removes no whole channel from any chain; raise it")
    # shapes recorded for intermediate tensors are stale now; infer them again
    del model.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:  # onnx raises several error types from inference
        raise PassError(f"shape inference after channel pruning failed: {first_line(exc)}") from exc


def _prune_chain(model: onnx.ModelProto, chain: _Chain, sparsity: float) -> int:
    graph = model.graph
    nodes = {n.name: n for n in graph.node}
    inits = {t.name: t for t in graph.initializer}
    first, second = nodes[chain.first], nodes[chain.second]
    w1 = numpy_helper.to_array(inits[first.input[1]])
    out_axis1 = _out_axis(first)
    channels = w1.shape[out_axis1]
    remove = int(np.floor(channels * sparsity))
    if remove == 0 or remove >= channels:
        return 0
    l1 = np.abs(np.moveaxis(w1, out_axis1, 0)).reshape(channels, -1).sum(axis=1)
    order = np.argsort(l1, kind="stable")
    keep = np.sort(order[remove:])

    _replace(inits[first.input[1]], np.take(w1, keep, axis=out_axis1))
    if len(first.input) > 2 and first.input[2] in inits:
        bias = numpy_helper.to_array(inits[first.input[2]])
        if bias.ndim >= 1 and bias.shape[-1] == channels:
            _replace(inits[first.input[2]], np.take(bias, keep, axis=bias.ndim - 1))
        elif bias.size != 1:
            return 0
    out_rank = len(w1.shape) if first.op_type == "Conv" else None
    for name in chain.between:
        node = nodes[name]
        for inp in node.input[1:] if node.op_type != "BatchNormalization" else node.input[1:5]:
            if inp not in inits:
                continue
            value = numpy_helper.to_array(inits[inp])
            if node.op_type == "BatchNormalization":
                _replace(inits[inp], value[keep])
                continue
            axis = _constant_channel_axis(value, out_rank)
            if axis is not None and value.shape[axis] == channels:
                _replace(inits[inp], np.take(value, keep, axis=axis))
        if node.op_type in ("Add", "Mul") and node.input[0] in inits:
            value = numpy_helper.to_array(inits[node.input[0]])
            axis = _constant_channel_axis(value, out_rank)
            if axis is not None and value.shape[axis] == channels:
                _replace(inits[node.input[0]], np.take(value, keep, axis=axis))
    w2 = numpy_helper.to_array(inits[second.input[1]])
    _replace(inits[second.input[1]], np.take(w2, keep, axis=_in_axis(second)))
    return 1


def _out_axis(node: onnx.NodeProto) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm" and next((a.i for a in node.attribute if a.name == "transB"), 0):
        return 0
    return 1


def _in_axis(node: onnx.NodeProto) -> int:
    return 1 - _out_axis(node) if node.op_type != "Conv" else 1


def _constant_channel_axis(value: np.ndarray[Any, Any], conv_rank: int | None) -> int | None:
    """Axis of a broadcast constant that lines up with the channel axis (1 for Conv outputs, last for dense)."""
    if value.ndim == 0:
        return None
    if conv_rank is None:
        return value.ndim - 1
    axis = value.ndim - (conv_rank - 1)
    return axis if axis >= 0 else None


def _replace(tensor: onnx.TensorProto, value: np.ndarray[Any, Any]) -> None:
    tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), tensor.name))
