"""Candidate planning: combined pipelines and the order of expected payoff per model kind and ISA."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from honed.passes import PassContext
from honed.search.candidates import ModelProfile, Step, payoff_rank, plan_pipelines

AVX2 = ("avx", "avx2", "fma")
VNNI = (*AVX2, "avx512f", "avx512_vnni")


@dataclass(frozen=True)
class _Cpu:
    isa: tuple[str, ...]


def _model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray[Any, Any]], x: list[Any]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _attention() -> onnx.ModelProto:
    """x[N,S,8]: softmax(q k^T) v with q, k, v projections, then an output projection."""
    rng = np.random.default_rng(0)
    w = {n: rng.normal(0, 0.3, (8, 8)) for n in ("wq", "wk", "wv", "wo")}
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["c"], name="context"),
        helper.make_node("MatMul", ["c", "wo"], ["y"], name="o"),
    ]
    return _model(nodes, w, ["N", "S", 8])


def _cnn() -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.normal(0, 0.3, (4, 3, 3, 3)), "fc": rng.normal(0, 0.3, (4, 2))}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc"),
    ]
    return _model(nodes, inits, ["N", 3, 8, 8])


def _ctx(isa: tuple[str, ...], backend: str = "onnxruntime") -> PassContext:
    def source() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        yield {"x": np.zeros((1, 3, 8, 8), np.float32)}

    return PassContext(target_backend=backend, hardware=_Cpu(isa), calibration=source)


def _names(pipelines: list[tuple[Step, ...]]) -> list[tuple[str, ...]]:
    return [tuple(s.name for s in steps) for steps in pipelines]


def test_profile_tells_transformers_cnns_and_vnni_apart() -> None:
    assert ModelProfile.of(_attention(), _ctx(AVX2)) == ModelProfile("transformer", "avx2")
    assert ModelProfile.of(_cnn(), _ctx(VNNI)) == ModelProfile("conv", "vnni")


def test_transformer_without_vnni_tries_fusion_then_dynamic_int8_first_and_static_qdq_last() -> None:
    pipelines, _ = plan_pipelines(_attention(), "onnxruntime", _ctx(AVX2))
    names = _names(pipelines)
    assert names[0] == ("transformer-fusion", "int8-dynamic")
    assert names.index(("int8-dynamic",)) < names.index(("transformer-fusion",))
    per_channel = [i for i, p in enumerate(pipelines) if p[-1].name == "int8-dynamic" and p[-1].params["per_channel"]]
    first_static = min(i for i, n in enumerate(names) if n[-1] == "int8-static")
    assert max(per_channel) < first_static and names.index(("transformer-fusion",)) < first_static
    # the prefix is the plain pass, the quantizer keeps its own search-space settings (per-channel first)
    first = pipelines[0]
    assert first[1].params["per_channel"] is True and first[1].params["reduce_range"] is True
    # per-tensor dynamic INT8 breaks transformers: after every per-channel and float pipeline
    per_tensor = [
        i for i, p in enumerate(pipelines) if p[-1].name == "int8-dynamic" and not p[-1].params["per_channel"]
    ]
    assert per_tensor and min(per_tensor) > names.index(("transformer-fusion",))
    assert min(per_tensor) > max(
        i for i, p in enumerate(pipelines) if p[-1].name == "int8-dynamic" and p[-1].params["per_channel"]
    )


def test_cnn_tries_graph_and_static_int8_before_dynamic_int8() -> None:
    pipelines, _ = plan_pipelines(_cnn(), "onnxruntime", _ctx(AVX2))
    names = _names(pipelines)
    assert names[0] == ("graph",)
    assert ("graph", "int8-static") in names and ("transformer-fusion", "int8-static") not in names
    static = names.index(("int8-static",))
    assert all(i > static for i, n in enumerate(names) if "int8-dynamic" in n)
    combined = next(p for p in pipelines if _names([p])[0] == ("graph", "int8-static"))
    assert combined[0].params["level"] == "basic"  # extended would fuse into ops the quantizer cannot read
    # with VNNI, static INT8 leads
    assert _names(plan_pipelines(_cnn(), "onnxruntime", _ctx(VNNI))[0])[0] == ("int8-static",)


def test_combine_false_plans_single_passes_only() -> None:
    pipelines, _ = plan_pipelines(_attention(), "onnxruntime", _ctx(AVX2), combine=False)
    assert pipelines and all(len(p) == 1 for p in pipelines)


def test_original_on_another_backend_and_unknown_pipelines_are_ranked() -> None:
    transformer = ModelProfile("transformer", "avx2")
    assert payoff_rank((), "openvino", transformer) < payoff_rank((Step("graph"),), "onnxruntime", transformer)
    unknown = (Step("prune"),)
    assert payoff_rank(unknown, "onnxruntime", transformer) < payoff_rank(
        (Step("int8-static"),), "onnxruntime", transformer
    )
    # NNCF INT8 of a transformer: after the cheap FP32 candidates without VNNI, right after fusion+INT8 with it
    nncf = (Step("nncf-int8"),)
    assert payoff_rank(nncf, "openvino", transformer) > payoff_rank((Step("graph"),), "onnxruntime", transformer)
    with_vnni = ModelProfile("transformer", "vnni")
    assert payoff_rank(nncf, "openvino", with_vnni) < payoff_rank((), "openvino", with_vnni)
    conv = ModelProfile("conv", "avx2")
    assert payoff_rank(unknown, "onnxruntime", conv) < payoff_rank((Step("int8-dynamic"),), "onnxruntime", conv)
