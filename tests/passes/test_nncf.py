"""nncf-int8: quantizes with the user's calibration batches into QDQ ONNX that OpenVINO runs in INT8."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from honed.evaluate import metrics
from honed.passes import PassContext, get_pass
from honed.runtime import RuntimeConfig, create_session
from tests.search.optimize_models import tiny_classifier

pytest.importorskip("nncf")


def _batches() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(0)
    for _ in range(8):
        yield {"x": rng.normal(size=(4, 16)).astype(np.float32)}


def test_nncf_int8_runs_on_openvino_close_to_fp32(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx")
    nncf_pass = get_pass("nncf-int8")
    ctx = PassContext(target_backend="openvino", calibration=_batches, work_dir=tmp_path)
    assert nncf_pass.skip_reason(ctx) is None
    assert nncf_pass.skip_reason(PassContext(target_backend="onnxruntime", calibration=_batches)) is not None
    assert "calibration" in (nncf_pass.skip_reason(PassContext(target_backend="openvino")) or "")
    quantized = nncf_pass.run(onnx.load(str(source)), {"subset_size": 8}, ctx)
    assert "QuantizeLinear" in {n.op_type for n in quantized.graph.node}
    path = tmp_path / "q.onnx"
    onnx.save(quantized, path)
    x = np.random.default_rng(1).normal(size=(32, 16)).astype(np.float32)
    ref = create_session(source).run({"x": x})["probs"]
    out = create_session(path, RuntimeConfig(backend="openvino")).run({"x": x})["probs"]
    assert metrics.nonfinite_count(out) == 0
    assert float(metrics.cosine_per_item(ref, out).mean()) > 0.95
    again = nncf_pass.run(onnx.load(str(source)), {"subset_size": 8}, ctx)
    assert again.SerializeToString() == quantized.SerializeToString()  # deterministic, so recipes replay
