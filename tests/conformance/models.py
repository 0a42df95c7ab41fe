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
