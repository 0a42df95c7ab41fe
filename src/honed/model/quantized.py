"""Whether a model is already quantized, and how: QDQ (QuantizeLinear/DequantizeLinear pairs around float ops, as
PyTorch QAT, NNCF and ONNX Runtime's static quantizer write them) or QOperator (integer ops such as QLinearConv,
MatMulInteger, DynamicQuantizeLinear).

A quantized model carries its own scales and zero points, learned in training or calibrated before; quantizing it
again throws them away and re-rounds, so whoever transforms a model asks here first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import onnx

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QOPERATOR_OPS = (
    "QLinearConv",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearConcat",
    "QGemm",
    "ConvInteger",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul",
)
_INTEGER_TYPES = {
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT4: "int4",
    onnx.TensorProto.UINT4: "uint4",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.UINT16: "uint16",
}


@dataclass(frozen=True)
class QuantizationInfo:
    """How a model is quantized: its format, the quantization ops it holds and the integer types they use."""

    format: str
    """``qdq`` or ``qoperator``."""
    ops: Mapping[str, int]
    """Quantization op type -> how many nodes of it (subgraphs included)."""
    types: tuple[str, ...]
    """Integer element types of the zero points (or, without them, of the quantized weights), e.g. ``int8``."""

    def describe(self) -> str:
        """``QDQ: 2 QuantizeLinear, 2 DequantizeLinear (int8)``."""
        ops = ", ".join(f"{n} {op}" for op, n in sorted(self.ops.items()))
        types = f" ({', '.join(self.types)})" if self.types else ""
        return f"{'QDQ' if self.format == 'qdq' else 'QOperator'}: {ops}{types}"

    def reason(self) -> str:
        """Why a quantization pass leaves the model alone: ``already quantized (QDQ int8, 4 nodes)``."""
        types = f" {'/'.join(self.types)}" if self.types else ""
        nodes = sum(self.ops.values())
        name = "QDQ" if self.format == "qdq" else "QOperator"
        return f"already quantized ({name}{types}, {nodes} node{'s' if nodes != 1 else ''})"

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "ops": dict(sorted(self.ops.items())), "types": list(self.types)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizationInfo:
        return cls(
            format=str(data["format"]),
            ops={str(k): int(v) for k, v in dict(data["ops"]).items()},
            types=tuple(str(t) for t in data["types"]),
        )


def detect_quantization(model: onnx.ModelProto) -> QuantizationInfo | None:
    """The model's quantization, or None for a model with no quantization op."""
    nodes = list(_nodes(model.graph))
    counts = Counter(n.op_type for n in nodes if n.op_type in QDQ_OPS or n.op_type in QOPERATOR_OPS)
    if not counts:
        return None
    fmt = "qoperator" if any(op in QOPERATOR_OPS for op in counts) else "qdq"
    return QuantizationInfo(format=fmt, ops=dict(counts), types=_integer_types(model.graph, nodes))


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def _integer_types(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> tuple[str, ...]:
    """The element types of the zero points the quantization ops use (their third input), else of int weights."""
    tensors = {t.name: t.data_type for t in graph.initializer}
    for node in nodes:  # exporters often give zero points as Constant nodes rather than initializers
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if value is not None:
                tensors[node.output[0]] = value.data_type
    zero_points = {
        tensors[n.input[2]] for n in nodes if n.op_type in QDQ_OPS and len(n.input) > 2 and n.input[2] in tensors
    }
    found = zero_points or set(tensors.values())
    return tuple(sorted(_INTEGER_TYPES[t] for t in found if t in _INTEGER_TYPES))
