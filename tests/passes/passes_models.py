"""Tiny ONNX models for the pass tests: the contract battery's graphs, and an SDPA-style attention export."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from honed.passes.tiny_models import TINY_MODELS, Calibration, calibration_for, make_attention, make_cnn, make_mlp
from honed.passes.tiny_models import initializer as _init

__all__ = ["MODELS", "Calibration", "calibration_for", "make_attention", "make_cnn", "make_mlp", "make_sdpa_attention"]

MODELS = TINY_MODELS


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
