"""A model that is already quantized is recognised (QDQ or QOperator), and a QAT-style torch module keeps its
quantization through the import, recorded in import.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import honed
from honed.intake import ImportRecord
from honed.model.quantized import QuantizationInfo, detect_quantization
from tests.graphs import matmul_model


def _qdq_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
        numpy_helper.from_array(rng.standard_normal((4, 2)).astype(np.float32), "W"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
            helper.make_node("MatMul", ["dq", "W"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _qoperator_model() -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(np.ones((4, 2), np.uint8), "W"),
        numpy_helper.from_array(np.array(0, np.uint8), "a_zp"),
        numpy_helper.from_array(np.array(0, np.uint8), "w_zp"),
    ]
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "W", "a_zp", "w_zp"], ["y"])],
        "qop",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_qdq_and_qoperator_are_told_apart(tmp_path: Path) -> None:
    qdq = detect_quantization(_qdq_model())
    assert qdq == QuantizationInfo("qdq", {"QuantizeLinear": 1, "DequantizeLinear": 1}, ("int8",))
    assert qdq.describe() == "QDQ: 1 DequantizeLinear, 1 QuantizeLinear (int8)"
    assert QuantizationInfo.from_dict(qdq.to_dict()) == qdq
    qop = detect_quantization(_qoperator_model())
    assert qop is not None and qop.format == "qoperator" and qop.ops == {"MatMulInteger": 1} and qop.types == ("uint8",)
    assert detect_quantization(onnx.load(str(matmul_model(tmp_path / "f.onnx")))) is None


def test_a_qat_style_torch_module_keeps_its_quantization(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="the PyTorch importer needs torch (pip install 'honed[import]')")

    class FakeQuantLinear(torch.nn.Module):
        """What quantization-aware training leaves: fake-quantized activations and weights around a linear."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(8, 4)

        def forward(self, x: Any) -> Any:
            x = torch.fake_quantize_per_tensor_affine(x, 0.05, 0, -128, 127)
            w = torch.fake_quantize_per_tensor_affine(self.linear.weight, 0.01, 0, -128, 127)
            return torch.nn.functional.linear(x, w, self.linear.bias)

    torch.manual_seed(0)
    result = honed.from_torch(FakeQuantLinear(), torch.randn(4, 8), out=tmp_path / "out")
    quantization = result.record.quantization
    assert quantization is not None and quantization.format == "qdq" and quantization.types == ("int8",)
    assert quantization.ops == {"QuantizeLinear": 2, "DequantizeLinear": 2}
    assert result.record.verification.ok and result.record.verification.outputs[0].max_abs_error < 1e-5
    assert ImportRecord.read(tmp_path / "out").quantization == quantization
