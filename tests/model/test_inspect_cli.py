"""``honed inspect`` through the real CLI: output for good models, one clear line and exit 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from honed.cli.main import run


def _model(path: Path, *, external: bool = False) -> Path:
    w = numpy_helper.from_array(np.ones((2048, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 2048])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))
    return path


def test_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _model(tmp_path / "m.onnx")
    assert run(["inspect", str(path), "--json", "--batch", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"][0]["shape"] == ["batch", 3, 2048]
    assert data["flop_shapes"] == {"x": [2, 3, 2048]}
    assert data["flops"]["total"] == 2 * (2 * 3 * 4) * 2048
    assert data["op_histogram"] == {"MatMul": 1}


def test_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _model(tmp_path / "m.onnx")
    assert run(["inspect", str(path), "--shape", "x=4x3x2048"]) == 0
    out = capsys.readouterr().out
    assert "[batch, 3, 2048]" in out  # symbolic dims shown, not eaten as markup
    assert "MatMul" in out and "x=4x3x2048" in out
    assert f"{2 * (4 * 3 * 4) * 2048 / 1e9:.4g} GFLOP" in out


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = _model(tmp_path / "good.onnx")
    (tmp_path / "folder").mkdir()
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    magika = pytest.importorskip("magika")
    real = (Path(magika.__file__).parent / "models" / "standard_v3_3" / "model.onnx").read_bytes()
    truncated_real = tmp_path / "magika-truncated.onnx"
    truncated_real.write_bytes(real[: len(real) * 2 // 3])
    ext = _model(tmp_path / "ext.onnx", external=True)
    (tmp_path / "ext.onnx.data").unlink()
    broken = tmp_path / "broken.onnx"  # parses, but its node reads a tensor nothing defines
    graph = helper.make_graph(
        [helper.make_node("Relu", ["ghost"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(broken))
    g = str(good)
    return {
        "missing": ([str(tmp_path / "nope.onnx")], "model file not found"),
        "folder": ([str(tmp_path / "folder")], "not a model file"),
        "empty": ([str(empty)], "is empty"),
        "noise": ([str(noise)], "not an ONNX model"),
        "truncated": ([str(truncated)], "truncated"),
        "truncated-real": ([str(truncated_real)], "truncated"),
        "external": ([str(ext)], "external-data file that is missing: ext.onnx.data"),
        "checker": ([str(broken)], "fails the ONNX checker"),
        "unknown-input": ([g, "--shape", "y=1x3x2048"], "unknown input(s) y"),
        "letters": ([g, "--shape", "x=1xAx3"], "whole numbers"),
        "empty-shape": ([g, "--shape", "x="], "write NAME=DIMxDIM"),
        "zero": ([g, "--shape", "x=0x3"], ">= 1"),
        "rank": ([g, "--shape", "x=1x2048"], "has 2 dims but the input has 3"),
        "fixed-dim": ([g, "--shape", "x=1x3x100"], "fixes it at 2048"),
        "batch": ([g, "--batch", "0"], "--batch must be >= 1"),
    }


CASES = [
    "missing",
    "folder",
    "empty",
    "noise",
    "truncated",
    "truncated-real",
    "external",
    "checker",
    "unknown-input",
    "letters",
    "empty-shape",
    "zero",
    "rank",
    "fixed-dim",
    "batch",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, message = _bad_inputs(tmp_path)[case]
    assert run(["inspect", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("honed: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert captured.out == ""
