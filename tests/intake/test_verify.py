"""The verification on its own: figures per output, exact labels, the tolerance rule, a refusal that names the
worst output; and an export whose tensor was changed after conversion is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from honed.errors import ExportMismatch, InvalidArgument
from honed.intake.verify import Tolerance, compare, require_match
from tests.graphs import matmul_model


def _mlp(tmp_path: Path) -> tuple[onnx.ModelProto, dict[str, np.ndarray], np.ndarray]:
    model = onnx.load(str(matmul_model(tmp_path / "m.onnx", k=8, n=4)))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32)
    expected = np.maximum(x.astype(np.float64) @ weights["W"] + weights["B"], 0.0)
    return model, {"x": x}, expected


def test_a_faithful_graph_passes_with_its_figures(tmp_path: Path) -> None:
    model, feeds, expected = _mlp(tmp_path)
    v = compare(model, feeds, [expected], Tolerance(), inputs="test rows")
    assert v.ok and v.samples == 6 and v.outputs[0].name == "y"
    assert 0 < v.outputs[0].max_abs_error < 1e-5  # float32 against float64: small, never zero
    require_match(v)


def test_a_changed_tensor_is_refused_naming_the_output(tmp_path: Path) -> None:
    model, feeds, expected = _mlp(tmp_path)
    bias = next(t for t in model.graph.initializer if t.name == "B")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(0.5), "B"))
    v = compare(model, feeds, [expected], Tolerance(), inputs="test rows")
    assert not v.ok
    assert v.worst.name == "y" and v.worst.max_abs_error == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ExportMismatch, match=r"output 'y' has \d+ of 24 element\(s\) outside atol=0.0001"):
        require_match(v)


def test_a_looser_tolerance_accepts_what_a_tight_one_refuses(tmp_path: Path) -> None:
    model, feeds, expected = _mlp(tmp_path)
    shifted = expected + 1e-3
    assert not compare(model, feeds, [shifted], Tolerance(atol=1e-4, rtol=0), inputs="rows").ok
    assert compare(model, feeds, [shifted], Tolerance(atol=2e-3, rtol=0), inputs="rows").ok


def test_integer_outputs_must_match_exactly(tmp_path: Path) -> None:
    model, feeds, expected = _mlp(tmp_path)
    v = compare(model, feeds, [expected], Tolerance(), inputs="rows")
    assert v.ok
    from honed.intake.verify import _compare_one

    labels = np.array([0, 1, 1, 0])
    assert _compare_one("label", labels, labels.copy(), Tolerance()).ok
    off = _compare_one("label", labels, np.array([0, 1, 0, 0]), Tolerance(atol=10))
    assert off.mismatched == 1 and not off.ok


def test_output_count_and_bad_tolerance_are_refused(tmp_path: Path) -> None:
    model, feeds, expected = _mlp(tmp_path)
    with pytest.raises(ExportMismatch, match="1 output"):
        compare(model, feeds, [expected, expected], Tolerance(), inputs="rows")
    with pytest.raises(InvalidArgument, match="atol"):
        Tolerance(atol=-1)
