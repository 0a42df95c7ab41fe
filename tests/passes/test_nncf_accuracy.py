"""NNCF's accuracy control on an OpenVINO model, driven by honed's gate: a model full INT8 breaks comes back
inside the bound with most of it still quantized."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from honed.evaluate import AccuracyGate, Comparison, ReferenceOutputs
from honed.runtime import RuntimeConfig, create_session
from tests.graphs import outlier_chain, skip_openvino_int8_chain_without_vnni

ov = pytest.importorskip("openvino")
nncf = pytest.importorskip("nncf")

from honed.passes.nncf_accuracy import _Compiled, gate_score, quantize_with_gate  # noqa: E402


def _batches(seed: int, count: int = 8) -> list[dict[str, np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(4, 16)).astype(np.float32)} for _ in range(count)]


def _fake_quantized(model: Any) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def test_accuracy_control_recovers_the_gate_bound(tmp_path: Path) -> None:
    skip_openvino_int8_chain_without_vnni()
    path = tmp_path / "chain.onnx"
    onnx.save(outlier_chain(layers=8, outlier=3), path)
    original = create_session(path, RuntimeConfig(backend="openvino"))
    calibration, evaluation = _batches(1), _batches(2)

    def calib() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        return iter(calibration)

    reference = ReferenceOutputs.compute(original, lambda: iter(evaluation), tmp_path / "reference")
    comparison = Comparison(AccuracyGate(metric="cosine", min=0.999))
    model = ov.Core().read_model(str(path))
    full = nncf.quantize(model, nncf.Dataset([b["x"] for b in calibration]), subset_size=32)
    full_session = _Compiled(ov.Core().compile_model(full, "CPU"), original)
    assert gate_score(comparison, full_session, reference, None) < 0.999, "full INT8 must break the test model"

    result = quantize_with_gate(model, calib, comparison, reference, original, subset_size=32)

    assert result.accepted and result.value is not None and result.value >= 0.999
    assert result.validations >= 1
    assert _fake_quantized(result.model) > 0 and _fake_quantized(result.model) >= _fake_quantized(full) // 2
