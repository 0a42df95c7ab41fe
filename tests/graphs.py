"""Tiny ONNX graphs built with onnx.helper, shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def matmul_model(path: Path, k: int = 64, n: int = 32, seed: int = 0) -> Path:
    """y = relu(x @ W + b): x float32 [batch, k] -> y [batch, n]; 2*k*n FLOPs per item from the MatMul."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "B"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["y"], name="relu"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [w, b],
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


def int_input_model(path: Path, length: int = 16, classes: int = 5) -> Path:
    """An int32 [batch, length] input (like Magika's bytes) cast to float, projected to ``classes`` scores."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((length, classes)).astype(np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["f", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "ints",
        [helper.make_tensor_value_info("ids", TensorProto.INT32, ["batch", length])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        [w],
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


def wide_range_matmuls() -> onnx.ModelProto:
    """x[N,8] -> MatMul -> MatMul -> Relu -> MatMul: one channel 10^4 times larger between the first two, which
    per-tensor INT8 crushes (the third MatMul quantizes fine)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (8, 16))
    w1[:, 0] *= 1e4
    w2 = rng.normal(0, 0.5, (16, 16))
    w2[0, :] *= 1e-4
    w3 = rng.normal(0, 0.5, (16, 4))
    inits = [numpy_helper.from_array(w.astype(np.float32), n) for n, w in (("w1", w1), ("w2", w2), ("w3", w3))]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
        helper.make_node("MatMul", ["h1", "w2"], ["h2"], name="mm2"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu"),
        helper.make_node("MatMul", ["r2", "w3"], ["y"], name="mm3"),
    ]
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model
