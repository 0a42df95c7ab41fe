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
    return _x_to_y(nodes, inits, "wide", 8, 4)


def _x_to_y(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], name: str, width_in: int, width_out: int
) -> onnx.ModelProto:
    """An opset-13 model of ``nodes`` from ``x[N, width_in]`` to ``y[N, width_out]``."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def tiny_encoder(
    path: Path, *, vocab: int = 32, hidden: int = 8, pad_noise: float = 0.0, real_noise: float = 0.0
) -> Path:
    """An encoder-like graph: ``input_ids`` and ``attention_mask`` (int64 [batch, seq]) -> ``last_hidden_state``
    [batch, seq, hidden] = Embedding(ids) @ W, plus ``pad_noise`` times a fixed +-1 pattern at the padded
    positions (mask 0) and ``real_noise`` times it at the real ones (mask 1)."""
    rng = np.random.default_rng(5)
    pattern = np.where(np.arange(hidden) % 2 == 0, 1.0, -1.0).astype(np.float32)
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "E"),
        numpy_helper.from_array(rng.standard_normal((hidden, hidden)).astype(np.float32), "W"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(pad_noise * pattern, "pad_pattern"),
        numpy_helper.from_array(real_noise * pattern, "real_pattern"),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"], name="embed"),
        helper.make_node("MatMul", ["emb", "W"], ["h"], name="mm"),
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mf", "last_axis"], ["m3"]),
        helper.make_node("Sub", ["one", "m3"], ["p3"]),
        helper.make_node("Mul", ["p3", "pad_pattern"], ["pad_delta"]),
        helper.make_node("Mul", ["m3", "real_pattern"], ["real_delta"]),
        helper.make_node("Add", ["h", "pad_delta"], ["h1"]),
        helper.make_node("Add", ["h1", "real_delta"], ["last_hidden_state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return save(model, path)


def padded_batch(samples: int, seq: int = 6, vocab: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """``input_ids``/``attention_mask`` for :func:`tiny_encoder`: 2..seq real tokens per sample, then padding."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, seq + 1, size=samples)
    lengths[0] = 2  # at least one sample is mostly padding
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(1, vocab, size=(samples, seq)), 0).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}


def skip_openvino_int8_chain_without_vnni() -> None:
    """Skip a test that needs :func:`outlier_chain` in INT8 on OpenVINO within a 0.999 cosine: its kernels run on
    this CPU, and without VNNI (8-bit products summed in saturating 16-bit pairs) one quantized ordinary layer of
    the chain already costs ~0.01 cosine (a Zen 3: full INT8 0.0, one layer left quantized 0.989)."""
    import pytest

    from honed.hardware import detect_hardware
    from honed.passes._quant import VNNI_ISA

    if not set(VNNI_ISA) & set(detect_hardware().isa):
        pytest.skip("OpenVINO's INT8 without VNNI misses a 0.999 cosine on any INT8 layer of this chain")


def outlier_chain(layers: int = 8, outlier: int = 3) -> onnx.ModelProto:
    """x[N,16] -> ``layers`` MatMul+Tanh pairs (``mm0``, ``mm1``, ...): ordinary layers, except that ``mm{outlier}``
    writes one channel 10^4 times larger than the rest, which the next MatMul reads with a weight that scales it
    back down. Per-tensor INT8 of that channel's tensor crushes every other channel; the float model is fine."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    current = "x"
    for i in range(layers):
        w = rng.normal(0, 0.4, (16, 16))
        if i == outlier:
            w[:, 0] *= 1e4
        if i == outlier + 1:
            w[0, :] *= 1e-4
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        current = f"h{i}"
        if i != outlier and i < layers - 1:  # the outlier channel reaches the next layer unsquashed
            nodes.append(helper.make_node("Tanh", [current], [f"t{i}"], name=f"tanh{i}"))
            current = f"t{i}"
    nodes[-1].output[0] = "y"
    return _x_to_y(nodes, inits, "outlier_chain", 16, 16)


def variance_chain(layers: int = 8, offset: float = 300.0) -> onnx.ModelProto:
    """x[N,16] -> ``mm0`` -> + ``offset`` -> a layer norm written as Magika's export writes it, with the variance
    as E[a^2] - E[a]^2 (``sq``, ``msq``, ``m2``, ``var``) -> ``layers - 1`` more MatMul+Tanh pairs. ``a`` has a
    huge range next to its spread, so INT8 of ``a * a`` (range ~10^5) loses far more than the variance (~1):
    the cancellation downstream, not ``sq``'s own rounding, breaks the model."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.full((1, 16), offset, np.float32), "offset"),
        numpy_helper.from_array(np.array([1e-3], np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h0"], name="mm0"),
        helper.make_node("Add", ["h0", "offset"], ["a"], name="shift"),
        helper.make_node("ReduceMean", ["a"], ["mean"], name="mean", axes=[1]),
        helper.make_node("Mul", ["a", "a"], ["a2"], name="sq"),
        helper.make_node("ReduceMean", ["a2"], ["ea2"], name="msq", axes=[1]),
        helper.make_node("Mul", ["mean", "mean"], ["mean2"], name="m2"),
        helper.make_node("Sub", ["ea2", "mean2"], ["var"], name="var"),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="var_eps"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="std"),
        helper.make_node("Sub", ["a", "mean"], ["centered"], name="center"),
        helper.make_node("Div", ["centered", "std"], ["t0"], name="norm"),
    ]
    inits.append(numpy_helper.from_array(rng.normal(0, 0.4, (16, 16)).astype(np.float32), "w0"))
    current = "t0"
    for i in range(1, layers):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.4, (16, 16)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        nodes.append(helper.make_node("Tanh", [f"h{i}"], [f"t{i}"], name=f"tanh{i}"))
        current = f"t{i}"
    nodes[-1].output[0] = "y"
    return _x_to_y(nodes, inits, "variance_chain", 16, 16)
