"""The OpenVINO backend runs a tiny ONNX graph like ONNX Runtime does, with explicit precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from honed.errors import InvalidArgument
from honed.runtime import RuntimeConfig, create_session, get_backend
from honed.runtime.openvino_backend import compile_properties

pytest.importorskip("openvino")


def _tiny(path: Path) -> Path:
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_openvino_matches_onnxruntime(tmp_path: Path) -> None:
    model = _tiny(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    ov = create_session(model, RuntimeConfig(backend="openvino", intra_op_threads=1))
    ort = create_session(model)
    assert [s.name for s in ov.inputs] == ["x"] and [s.name for s in ov.outputs] == ["y"]
    assert ov.outputs[0].shape == (None, 3)
    np.testing.assert_allclose(ov.run({"x": x})["y"], ort.run({"x": x})["y"], rtol=1e-5, atol=1e-6)
    assert get_backend("openvino").version()


def test_precision_is_explicit_f32_by_default() -> None:
    props = compile_properties(RuntimeConfig(backend="openvino", intra_op_threads=2, affinity=(0, 1)))
    assert props["INFERENCE_PRECISION_HINT"] == "f32"
    assert props["INFERENCE_NUM_THREADS"] == 2
    assert props["ENABLE_CPU_PINNING"] == "YES"
    bf16 = compile_properties(RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": "bf16"}))
    assert bf16["INFERENCE_PRECISION_HINT"] == "bf16"
    with pytest.raises(InvalidArgument, match="INFERENCE_PRECISION_HINT"):
        compile_properties(RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": "int4"}))


def test_openvino_profile_writes_per_layer_times(tmp_path: Path) -> None:
    model = _tiny(tmp_path / "m.onnx")
    session = create_session(model, RuntimeConfig(backend="openvino"), profile_dir=tmp_path / "prof")
    session.run({"x": np.ones((2, 4), np.float32)})
    trace = session.end_profiling()
    assert trace is not None and trace.read_text().startswith("[")
