"""inspect_model on tiny graphs and on the real Magika model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import honed
from honed.model import ModelInfo, inspect_model


def _mlp(path: Path, *, external: bool = False) -> Path:
    """x[batch, 8] -> Gemm(8->16, bias) -> Relu -> MatMul(16->4): 8*16 + 16 + 16*4 = 208 parameters."""
    w1 = numpy_helper.from_array(np.arange(128, dtype=np.float32).reshape(8, 16), "w1")
    b1 = numpy_helper.from_array(np.zeros(16, np.float32), "b1")
    w2 = numpy_helper.from_array(np.ones((16, 4), np.float32), "w2")
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [w1, b1, w2],
    )
    model = helper.make_model(
        graph, producer_name="tests", producer_version="9.9", opset_imports=[helper.make_opsetid("", 17)]
    )
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def test_model_info_fields(tmp_path: Path) -> None:
    path = _mlp(tmp_path / "mlp.onnx")
    info = honed.inspect_model(path)
    assert isinstance(info, ModelInfo)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.file_bytes == path.stat().st_size
    assert info.producer_name == "tests" and info.producer_version == "9.9"
    assert info.graph_name == "mlp"
    assert info.opsets["ai.onnx.ml"] == 3 and "ai.onnx" in info.opsets
    assert [(s.name, s.shape) for s in info.inputs] == [("x", ("batch", 8))]
    assert [(s.name, s.shape) for s in info.outputs] == [("y", ("batch", 4))]
    assert info.op_histogram == {"Gemm": 1, "Relu": 1, "MatMul": 1}
    assert info.parameters == 208
    assert info.parameter_bytes == 208 * 4
    assert not info.uses_external_data
    assert info.flop_shapes == {"x": (1, 8)}
    assert info.flops.total == (2 * 8 * 16 + 16) + 2 * 16 * 4
    assert info.flops.uncounted_ops == {"Relu": 1}


def test_batch_and_shapes_scale_the_flops(tmp_path: Path) -> None:
    path = _mlp(tmp_path / "mlp.onnx")
    per_item = inspect_model(path).flops.total
    assert inspect_model(path, batch=32).flops.total == 32 * per_item
    assert inspect_model(path, {"x": (5, 8)}).flops.total == 5 * per_item
    assert inspect_model(path, {"x": (5, 8)}, batch=3).flop_shapes == {"x": (3, 8)}


def test_to_dict_is_json(tmp_path: Path) -> None:
    data = json.loads(json.dumps(inspect_model(_mlp(tmp_path / "mlp.onnx")).to_dict()))
    assert data["inputs"] == [{"name": "x", "dtype": "FLOAT", "shape": ["batch", 8]}]
    assert data["flops"]["by_op_type"] == {"Gemm": 2 * 8 * 16 + 16, "MatMul": 2 * 16 * 4}
    assert data["flop_shapes"] == {"x": [1, 8]}


def test_external_data(tmp_path: Path) -> None:
    path = _mlp(tmp_path / "mlp.onnx", external=True)
    info = inspect_model(path)
    assert info.external_data_files == ("mlp.onnx.data",)
    assert info.parameters == 208 and info.parameter_bytes == 208 * 4
    assert info.flops.total == (2 * 8 * 16 + 16) + 2 * 16 * 4


def test_folder_holding_model_onnx(tmp_path: Path) -> None:
    _mlp(tmp_path / "model.onnx")
    assert inspect_model(tmp_path).graph_name == "mlp"


@pytest.mark.e2e
def test_magika_flops() -> None:
    """Magika at batch 1: 0.7334 GFLOP, which is the 0.73 GFLOP/item quoted for it.

    Worked out from its three MAC ops (shapes from inference at bytes=1x2048):
    MatMul 2048x257 @ 257x64 (one-hot bytes -> embedding) = 33,685,504 MACs;
    Conv 256 -> 512 channels, kernel 5x1 over 512 positions -> 508 = 512*508*256*5 = 332,922,880 MACs;
    MatMul 1x512 @ 512x214 = 109,568 MACs. Sum 366,717,952 MACs = 733,435,904 FLOPs. Its ~60
    elementwise and reduction nodes are left out of the figure (listed as uncounted).
    """
    magika = pytest.importorskip("magika")
    path = Path(magika.__file__).parent / "models" / "standard_v3_3" / "model.onnx"
    info = inspect_model(path)
    assert info.flop_shapes == {"bytes": (1, 2048)}
    assert info.flops.by_op_type == {"Conv": 2 * 332_922_880, "MatMul": 2 * (33_685_504 + 109_568)}
    assert info.flops.total == 733_435_904
    assert info.flops.notes == ()
    assert inspect_model(path, batch=64).flops.total == 64 * info.flops.total
    assert info.inputs[0].shape is not None and isinstance(info.inputs[0].shape[0], str)  # symbolic batch kept
