"""PyTorch through torch.onnx: a module with example inputs, a .pt2 program, a TorchScript archive (which takes the
TorchScript exporter, with the reason recorded), and a module whose export differs from the module (refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import honed
from honed.errors import DataError, ExportMismatch
from honed.intake import ImportRecord, import_torch_file
from tests.intake.conftest import tiny_cnn

torch = pytest.importorskip("torch", reason="the PyTorch importer needs torch (pip install 'honed[import]')")


def _run_onnx(path: Path, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def test_a_module_exports_with_a_dynamic_batch_and_matches(tmp_path: Path) -> None:
    module = tiny_cnn()
    result = honed.from_torch(module, torch.randn(2, 3, 8, 8), out=tmp_path / "out")
    record = result.record
    assert record.converter == "torch.onnx (dynamo)" and record.fallback_reason is None
    assert record.inputs[0].name == "x" and record.inputs[0].shape == ("batch", 3, 8, 8)
    assert record.verification.ok and record.verification.outputs[0].max_abs_error < 1e-6
    assert record.verification.batch_sizes == (2, 3)  # the example's batch and one more: the axis really varies
    assert ImportRecord.from_dict(record.to_dict()) == record
    # another batch size than the example's runs and still agrees with the module
    x = np.random.default_rng(3).standard_normal((5, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert np.abs(_run_onnx(result.model_path, x) - want).max() < 1e-5


def test_a_training_module_is_exported_in_eval_mode_and_given_back_training(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).train()
    result = honed.from_torch(module, torch.randn(3, 4), out=tmp_path / "out")
    assert result.record.verification.ok and module.training


def test_a_user_sample_is_what_it_is_verified_on(tmp_path: Path) -> None:
    sample = {"x": np.random.default_rng(4).standard_normal((7, 3, 8, 8)).astype(np.float32)}
    result = honed.from_torch(tiny_cnn(), torch.randn(1, 3, 8, 8), sample=sample, out=tmp_path / "out")
    assert result.record.verification.samples == 7 and result.record.verification.inputs == "the sample"


def test_an_export_that_differs_from_the_module_is_refused_and_nothing_written(tmp_path: Path) -> None:
    class ExportsWrong(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            if torch.onnx.is_in_onnx_export():  # what the exporter sees is not what the module computes
                return x * 2
            return x + 0

    out = tmp_path / "out"
    with pytest.raises(ExportMismatch, match=r"output 'output' has 6 of 6 element\(s\) outside .*nothing was written"):
        honed.from_torch(ExportsWrong(), torch.ones(2, 3), out=out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_export_that_fixed_the_batch_size_is_refused(tmp_path: Path) -> None:
    class BakesItsBatch(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            if x.sum() > 0:  # data-dependent: torch.export refuses it, the TorchScript tracer bakes the branch
                return x.sum(1).reshape(int(x.shape[0]), 1)  # and the batch size of the example with it
            return -x

    with pytest.raises(ExportMismatch, match=r"cannot run on inputs x \(3, 4\) although its source can"):
        honed.from_torch(BakesItsBatch(), torch.rand(2, 4), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inputs_the_module_cannot_take_are_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot run on the given inputs \(x \(2, 5\) float32\)"):
        honed.from_torch(tiny_cnn(), torch.randn(2, 5), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_torchscript_takes_the_torchscript_exporter_and_says_why(cnn_files: dict[str, Path], tmp_path: Path) -> None:
    result = import_torch_file(cnn_files["pt"], out=tmp_path / "out", input_shape="3x3x8x8")
    record = result.record
    assert record.converter == "torch.onnx (torchscript)"
    assert record.fallback_reason is not None and "TorchScript" in record.fallback_reason
    assert record.verification.inputs == "generated inputs" and record.verification.samples == 3
    assert record.inputs[0].shape == ("batch", 3, 8, 8)
    assert record.verification.outputs[0].max_abs_error < 1e-6
