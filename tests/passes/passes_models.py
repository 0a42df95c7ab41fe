"""Tiny ONNX models built with onnx.helper for the pass tests, with synthetic calibration data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, array: np.ndarray[Any, Any]) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def make_mlp(opset: int = 11) -> onnx.ModelProto:
    """x[N,16] -> MatMul+Add -> Relu -> MatMul+Add -> Relu -> MatMul+Add -> y[N,8] (opset 11: QDQ needs an upgrade)."""
    rng = np.random.default_rng(1)
    inits = [
        _init("w1", rng.normal(0, 0.3, (16, 32))),
        _init("b1", rng.normal(0, 0.1, (32,))),
        _init("w2", rng.normal(0, 0.3, (32, 24))),
        _init("b2", rng.normal(0, 0.1, (24,))),
        _init("w3", rng.normal(0, 0.3, (24, 8))),
        _init("b3", rng.normal(0, 0.1, (8,))),
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
        _init("c1w", rng.normal(0, 0.3, (8, 3, 3, 3))),
        _init("c1b", rng.normal(0, 0.1, (8,))),
        _init("c2w", rng.normal(0, 0.2, (6, 8, 3, 3))),
        _init("c2b", rng.normal(0, 0.1, (6,))),
        _init("fw", rng.normal(0, 0.3, (5, 6))),
        _init("fb", rng.normal(0, 0.1, (5,))),
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
    inits = [_init(n, rng.normal(0, 0.3, (hidden, hidden))) for n in ("wq", "wk", "wv", "wo")] + [
        _init("gamma", np.ones(hidden)),
        _init("beta", np.zeros(hidden)),
        _init("scale", np.array(1.0 / np.sqrt(head))),
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


def make_sdpa_attention(hidden: int = 16, heads: int = 2) -> onnx.ModelProto:
    """Self-attention as torch exports ``scaled_dot_product_attention`` (transformers >= 4.36, opset 17).

    x[N,S,H] and a padding mask m[N,S] (1 = token): biased Q/K/V projections split by a Concat-built
    ``[N, S, -1, head]`` Reshape, sqrt(scale) on Q and K, ``Where(mask, 0, -inf)`` over ``[N,1,1,S]``, the
    ``Where(IsNaN(p), 0, p)`` guard, a Reshape of the context to its own shape, then the output projection.
    """
    rng = np.random.default_rng(5)
    head = hidden // heads
    root = float(head**-0.25)
    inits = [_init(f"w{p}", rng.normal(0, 0.3, (hidden, hidden))) for p in "qkvo"]
    inits += [_init(f"b{p}", rng.normal(0, 0.1, hidden)) for p in "qkv"]
    ints = {"zero": [0], "one": [1], "two": [2], "minus1": [-1], "head": [head], "hidden": [hidden], "heads": [heads]}
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()]
    inits += [_init("root", np.array(root)), _init("zero_f", np.array([0.0])), _init("ninf", np.array([-np.inf]))]
    inits += [numpy_helper.from_array(np.array([1, 2], np.int64), "axes12")]
    nodes = [
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Gather", ["xs", "zero"], ["n"], axis=0),
        helper.make_node("Gather", ["xs", "one"], ["s"], axis=0),
        helper.make_node("Concat", ["n", "s", "minus1", "head"], ["split_shape"], axis=0),
        helper.make_node("Concat", ["n", "s", "hidden"], ["merge_shape"], axis=0),
        helper.make_node("Cast", ["m"], ["mb"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["mb", "axes12"], ["mb4"]),
        helper.make_node("Where", ["mb4", "zero_f", "ninf"], ["bias"]),
    ]
    for p in "qkv":
        nodes += [
            helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}0"]),
            helper.make_node("Add", [f"{p}0", f"b{p}"], [f"{p}1"]),
            helper.make_node("Reshape", [f"{p}1", "split_shape"], [f"{p}2"]),
            helper.make_node("Transpose", [f"{p}2"], [f"{p}3"], perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3]),
        ]
    nodes += [
        helper.make_node("Mul", ["q3", "root"], ["q4"]),
        helper.make_node("Mul", ["k3", "root"], ["k4"]),
        helper.make_node("MatMul", ["q4", "k4"], ["s0"]),
        helper.make_node("Add", ["s0", "bias"], ["s1"]),
        helper.make_node("Softmax", ["s1"], ["p0"], axis=-1),
        helper.make_node("IsNaN", ["p0"], ["nan"]),
        helper.make_node("Where", ["nan", "zero_f", "p0"], ["p1"]),
        helper.make_node("MatMul", ["p1", "v3"], ["c0"]),
        helper.make_node("Shape", ["c0"], ["cs"]),
        helper.make_node("Gather", ["cs", "one"], ["c_heads"], axis=0),
        helper.make_node("Gather", ["cs", "two"], ["c_seq"], axis=0),
        helper.make_node("Concat", ["n", "c_heads", "c_seq", "head"], ["c_shape"], axis=0),
        helper.make_node("Reshape", ["c0", "c_shape"], ["c1"]),
        helper.make_node("Transpose", ["c1"], ["c2"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["c2", "merge_shape"], ["c3"]),
        helper.make_node("MatMul", ["c3", "wo"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "sdpa_attention",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", hidden]),
            helper.make_tensor_value_info("m", TensorProto.INT64, ["N", "S"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
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


MODELS: dict[str, Callable[[], onnx.ModelProto]] = {"mlp": make_mlp, "cnn": make_cnn, "attention": make_attention}
