"""Tiny models and data files for the optimize tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_classifier(path: Path) -> Path:
    """x[N,16] float -> MatMul -> Relu -> MatMul -> Softmax -> probs[N,4]."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.4, (16, 32)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.4, (32, 4)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["logits"], name="mm2"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def tiny_data(path: Path, samples: int, seed: int = 0, **overrides: Any) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.normal(size=(samples, 16)).astype(np.float32)}
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path
