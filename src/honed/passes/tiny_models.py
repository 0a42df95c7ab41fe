"""Tiny ONNX graphs built with ``onnx.helper`` (an MLP, a small CNN, an attention block) and synthetic
calibration data: what the pass contract battery (:mod:`honed.passes.checks`) runs every pass on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def initializer(name: str, array: np.ndarray[Any, Any]) -> onnx.TensorProto:
    """A float32 initializer named ``name``."""
    return numpy_helper.from_array(array.astype(np.float32), name)


def make_mlp(opset: int = 11) -> onnx.ModelProto:
    """x[N,16] -> MatMul+Add -> Relu -> MatMul+Add -> Relu -> MatMul+Add -> y[N,8] (opset 11: QDQ needs an upgrade)."""
    rng = np.random.default_rng(1)
    inits = [
        initializer("w1", rng.normal(0, 0.3, (16, 32))),
        initializer("b1", rng.normal(0, 0.1, (32,))),
        initializer("w2", rng.normal(0, 0.3, (32, 24))),
        initializer("b2", rng.normal(0, 0.1, (24,))),
        initializer("w3", rng.normal(0, 0.3, (24, 8))),
        initializer("b3", rng.normal(0, 0.1, (8,))),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="add1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"], name="mm2"),
        helper.make_node("Add", ["m2", "b2"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("MatMul", ["r2", "w3"], ["m3"], name="mm3"),
        helper.make_node("Add", ["m3", "b3"], ["y"], name="add3"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def make_cnn() -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y[N,5]."""
    rng = np.random.default_rng(2)
    inits = [
        initializer("c1w", rng.normal(0, 0.3, (8, 3, 3, 3))),
        initializer("c1b", rng.normal(0, 0.1, (8,))),
        initializer("c2w", rng.normal(0, 0.2, (6, 8, 3, 3))),
        initializer("c2b", rng.normal(0, 0.1, (6,))),
        initializer("fw", rng.normal(0, 0.3, (5, 6))),
        initializer("fb", rng.normal(0, 0.1, (5,))),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2w", "c2b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_attention(hidden: int = 16, heads: int = 2) -> onnx.ModelProto:
    """x[N,S,H] -> self-attention (Q/K/V projections, scaled softmax, output projection) + residual -> LayerNorm."""
    rng = np.random.default_rng(3)
    head = hidden // heads
    inits = [initializer(n, rng.normal(0, 0.3, (hidden, hidden))) for n in ("wq", "wk", "wv", "wo")] + [
        initializer("gamma", np.ones(hidden)),
        initializer("beta", np.zeros(hidden)),
        initializer("scale", np.array(1.0 / np.sqrt(head))),
        numpy_helper.from_array(np.array([0, 0, heads, head], dtype=np.int64), "split_shape"),
        numpy_helper.from_array(np.array([0, 0, hidden], dtype=np.int64), "merge_shape"),
    ]
    nodes = []
    for p in ("q", "k", "v"):
        nodes += [
            helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}0"], name=f"proj_{p}"),
            helper.make_node("Reshape", [f"{p}0", "split_shape"], [f"{p}1"], name=f"split_{p}"),
            helper.make_node(
                "Transpose", [f"{p}1"], [f"{p}2"], name=f"heads_{p}", perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3]
            ),
        ]
    nodes += [
        helper.make_node("MatMul", ["q2", "k2"], ["s0"], name="scores"),
        helper.make_node("Mul", ["s0", "scale"], ["s1"], name="scale_scores"),
        helper.make_node("Softmax", ["s1"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v2"], ["c0"], name="context"),
        helper.make_node("Transpose", ["c0"], ["c1"], name="merge_t", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["c1", "merge_shape"], ["c2"], name="merge"),
        helper.make_node("MatMul", ["c2", "wo"], ["o"], name="proj_o"),
        helper.make_node("Add", ["o", "x"], ["res"], name="residual"),
        helper.make_node("LayerNormalization", ["res", "gamma", "beta"], ["y"], name="ln", axis=-1, epsilon=1e-5),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


Calibration = Callable[[], Iterator[dict[str, np.ndarray[Any, Any]]]]


def calibration_for(model: onnx.ModelProto, batches: int = 4, batch: int = 4, seed: int = 0) -> Calibration:
    """A fresh iterator of random input batches at each call, shaped from the model's inputs (symbols -> small)."""
    inputs = [(v.name, v.type.tensor_type) for v in model.graph.input]

    def source() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        rng = np.random.default_rng(seed)
        for _ in range(batches):
            feed = {}
            for name, tt in inputs:
                dims = [
                    d.dim_value if d.HasField("dim_value") else (batch if i == 0 else 6)
                    for i, d in enumerate(tt.shape.dim)
                ]
                feed[name] = rng.normal(0, 1, dims).astype(np.float32)
            yield feed

    return source


TINY_MODELS: dict[str, Callable[[], onnx.ModelProto]] = {"mlp": make_mlp, "cnn": make_cnn, "attention": make_attention}
"""The graphs :func:`honed.passes.checks.check_pass` runs every pass on, by name."""
