"""scikit-learn through skl2onnx, each model checked against its own predict/predict_proba/transform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import honed
from honed.errors import DataError, InvalidArgument
from honed.intake import ImportRecord
from honed.runtime import create_session
from tests.intake.conftest import fitted

pytest.importorskip("skl2onnx", reason="the scikit-learn importer needs skl2onnx (pip install 'honed[import]')")

Data = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
CLASSES = ["label", "probabilities"]


@pytest.mark.parametrize(
    ("kind", "outputs", "bound"),
    [
        ("logistic", CLASSES, 1e-6),
        ("ridge", ["variable"], 1e-5),
        ("pca", ["variable"], 1e-5),
        ("pipeline", CLASSES, 1e-6),
        ("linear-svc", CLASSES, 1e-5),
        ("kmeans", ["label", "scores"], 1e-5),
    ],
)
def test_each_estimator_is_verified_and_recorded(
    kind: str, outputs: list[str], bound: float, features: Data, tmp_path: Path
) -> None:
    X, y = features
    estimator = fitted(kind, X, y)
    result = honed.from_sklearn(estimator, X, out=tmp_path / "out")
    record = result.record
    assert [o.name for o in record.verification.outputs] == outputs
    assert record.verification.ok and record.verification.samples == 64
    assert all(o.max_abs_error < bound for o in record.verification.outputs)
    assert record.converter == "skl2onnx" and record.framework == "sklearn" and record.opset > 0
    assert [s.to_dict() for s in record.inputs] == [{"name": "X", "dtype": "FLOAT", "shape": [None, 5]}]
    assert ImportRecord.read(tmp_path / "out") == record
    assert json.loads(result.record_path.read_text())["schema"] == "honed.import/1"
    # the file written is the one verified, and it runs through honed's own session at another batch size
    session = create_session(result.model_path)
    got = session.run({"X": X[:3].astype(np.float32)})
    assert len(got) == len(outputs)


def test_generated_rows_when_no_sample(features: Data, tmp_path: Path) -> None:
    X, y = features
    result = honed.from_sklearn(fitted("logistic", X, y), out=tmp_path / "out")
    assert result.record.verification.inputs == "generated inputs" and result.record.verification.samples == 16


def test_rows_of_the_wrong_width_or_an_unfitted_model_are_refused(features: Data, tmp_path: Path) -> None:
    X, y = features
    from sklearn.linear_model import Ridge

    with pytest.raises(DataError, match="must have 5 columns"):
        honed.from_sklearn(fitted("ridge", X, y), X[:, :3], out=tmp_path / "out")
    with pytest.raises(InvalidArgument, match="not fitted"):
        honed.from_sklearn(Ridge(), X, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
