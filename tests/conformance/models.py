"""Tiny ONNX models for the conformance suite, built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph: onnx.GraphProto, path: Path, opset: int = 13) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def mlp(path: Path, seed: int = 0) -> Path:
    """float32 [batch, 8] -> Gemm -> Relu -> Gemm -> [batch, 4]."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "B1"),
        numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W2"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    return _save(graph, path)


TYPED = {
    "f16": (TensorProto.FLOAT16, "FP16", np.float16),
    "f64": (TensorProto.DOUBLE, "FP64", np.float64),
    "b": (TensorProto.BOOL, "BOOL", np.bool_),
    "u8": (TensorProto.UINT8, "UINT8", np.uint8),
    "i64": (TensorProto.INT64, "INT64", np.int64),
    "s": (TensorProto.STRING, "BYTES", np.object_),
}
"""Inputs of the ``typed`` model: name -> (ONNX type, V2 datatype, numpy type); each ``<name>_out`` echoes it."""


def typed(path: Path) -> Path:
    """One Identity per datatype: inputs ``f16, f64, b, u8, i64, s`` [batch, 2] -> ``<name>_out``."""
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name in TYPED]
    graph = helper.make_graph(
        nodes,
        "typed",
        [helper.make_tensor_value_info(n, t, ["batch", 2]) for n, (t, _, _) in TYPED.items()],
        [helper.make_tensor_value_info(f"{n}_out", t, ["batch", 2]) for n, (t, _, _) in TYPED.items()],
    )
    return _save(graph, path)


def slow(path: Path, size: int = 1024, layers: int = 8) -> Path:
    """float32 [batch, 1] -> [batch, 1] through ``layers`` [size, size] matmuls per row: slow on purpose."""
    weight = helper.make_tensor("w_value", TensorProto.FLOAT, [1], [0.001])
    nodes = [
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([size, size], np.int64))),
        helper.make_node("ConstantOfShape", ["shape"], ["W"], value=weight),
        helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([2], np.int64))),
        helper.make_node("Unsqueeze", ["x", "axes"], ["x3"]),
        helper.make_node("Expand", ["x3", "shape"], ["h0"]),
    ]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "W"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("ReduceMean", [f"h{layers}"], ["m"], axes=[2], keepdims=0))
    nodes.append(helper.make_node("Slice", ["m", "zero", "one", "one"], ["y"]))
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
    return _save(graph, path)
