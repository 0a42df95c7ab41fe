"""An already-quantized (QDQ) model through ``honed optimize``: its quantization is kept (the quantization passes
are skipped with the reason), graph passes still run, and the gate compares against the model as given or against
the float model given with ``--reference``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from rich.console import Console

from honed.cli.main import run
from honed.errors import InvalidArgument
from honed.model.quantized import QuantizationInfo, detect_quantization
from honed.passes import PassContext, get_pass
from honed.report import candidates_table
from honed.search import optimize

FAST: dict[str, Any] = {
    "measure_s": 0.02,
    "final_rounds": 2,
    "backends": ["onnxruntime"],
    "tune_runtime": False,
    "time_budget": "15s",
}
FAST_FLAGS = ["--measure", "0.02", "--rounds", "2", "--backends", "onnxruntime", "--no-tune"]
QUANTIZERS = ("int8-dynamic", "int8-static", "nncf-int8")
REASON = "already quantized (QDQ int8, "


@pytest.fixture
def qdq(tmp_path: Path, model: Path, data: Path) -> Path:
    """The tiny float classifier quantized by ONNX Runtime's static quantizer (QDQ, int8), calibrated on ``data``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    x = np.load(data)["x"]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows: Iterator[np.ndarray[Any, Any]] = iter(x[i : i + 1] for i in range(len(x)))

        def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
            row = next(self.rows, None)
            return None if row is None else {"x": row}

    out = tmp_path / "qdq.onnx"
    quantize_static(
        str(model),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def _optimize(
    tmp_path: Path, model: Path, data: Path, name: str, *extra: str, flags: list[str] = FAST_FLAGS
) -> tuple[int, dict[str, Any]]:
    out = tmp_path / name
    argv = ["optimize", str(model), "--data", str(data), "--metric", "cosine", "--min", "0.9", "--json"]
    argv += ["--time-budget", "20s", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *flags]
    code = run([*argv, *extra])
    return code, json.loads((out / "report.json").read_text())


def test_quantization_passes_are_skipped_and_graph_passes_still_run(
    tmp_path: Path, qdq: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [*FAST_FLAGS[:4], "--backends", "onnxruntime,openvino", "--no-tune"]
    code, report = _optimize(tmp_path, qdq, data, "out", flags=flags)
    assert code in (0, 3), capsys.readouterr().err
    assert report["model"]["quantization"]["format"] == "qdq"
    skipped = {(s["pass"], s["backend"]): s["reason"] for s in report["skipped"]}
    nodes = sum(report["model"]["quantization"]["ops"].values())
    for key in (("int8-dynamic", "onnxruntime"), ("int8-static", "onnxruntime"), ("nncf-int8", "openvino")):
        assert skipped[key] == f"{REASON}{nodes} nodes)", skipped
    # OpenVINO runs the QDQ model as it is (its INT8 ops from the Q/DQ pairs)
    assert any(c["backend"] == "openvino" and not c["passes"] and c["latency_ms"] for c in report["candidates"])
    tried = [p["name"] for c in report["candidates"] for p in c["passes"]]
    assert tried and not set(tried) & set(QUANTIZERS), tried
    graph_rows = [c for c in report["candidates"] if [p["name"] for p in c["passes"]] == ["graph"]]
    assert any(c["latency_ms"] is not None for c in graph_rows), report["candidates"]
    # the quantized model is its own reference: the original agrees with itself exactly
    assert report["baseline"]["metric_value"] == pytest.approx(1.0, abs=1e-6)
    assert report["data"]["reference"] is None
    assert detect_quantization(onnx.load(str(tmp_path / "out" / "model.onnx"))) is not None


def test_a_float_reference_moves_the_gate_off_self_comparison(
    tmp_path: Path, model: Path, qdq: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _optimize(tmp_path, qdq, data, "ref", "--reference", str(model), "--passes", "graph")
    assert code in (0, 3), capsys.readouterr().err
    assert report["data"]["reference"]["path"] == str(model)
    baseline = report["baseline"]["metric_value"]
    # the QDQ model against its float source: close, but int8 rounding keeps it off 1
    assert 0.9 < baseline < 1 - 1e-6, baseline
    judged = [c for c in report["candidates"][1:] if c["metric_value"] is not None]
    assert all(c["metric_value"] < 1 - 1e-6 for c in judged), judged
    assert "(--reference)" in (tmp_path / "ref" / "report.html").read_text()


def test_report_table_says_why_quantizers_were_not_tried(tmp_path: Path, qdq: Path, data: Path) -> None:
    passes = ["int8-dynamic", "graph"]
    gate: dict[str, Any] = {"metric": "cosine", "minimum": 0.9, "cache_dir": tmp_path / "cache"}
    result = optimize(qdq, out=tmp_path / "api", data=data, passes=passes, **gate, **FAST)
    assert result.document.model is not None and result.document.model["quantization"]["format"] == "qdq"
    assert [s["pass"] for s in result.document.skipped] == ["int8-dynamic"]
    console = Console(record=True, width=200)
    console.print(candidates_table(result.document))
    text = console.export_text()
    assert REASON in text and "original [f32] @ onnxruntime/cpu" in text


@pytest.mark.parametrize(
    ("name", "backend", "provider"),
    [
        ("int8-dynamic", "onnxruntime", "cpu"),
        ("int8-static", "onnxruntime", "cpu"),
        ("nncf-int8", "openvino", "cpu"),
        ("fp16", "onnxruntime", "cuda"),
    ],
)
def test_every_quantizing_pass_leaves_a_quantized_model_alone(
    model: Path, qdq: Path, name: str, backend: str, provider: str
) -> None:
    ctx = PassContext(target_backend=backend, target_provider=provider, calibration=lambda: iter(()))
    quantizer = get_pass(name)
    assert quantizer.quantizes
    reason = quantizer.skip_reason(ctx, None, onnx.load(str(qdq)))
    assert reason is not None and reason.startswith(REASON), reason
    float_reason = quantizer.skip_reason(ctx, None, onnx.load(str(model)))
    assert float_reason is None or not float_reason.startswith("already quantized"), float_reason
    graph = get_pass("graph")
    assert graph.skip_reason(PassContext(), None, onnx.load(str(qdq))) is None
    assert detect_quantization(graph.run(qdq, None, PassContext())) is not None  # graph passes keep the Q/DQ pairs


def _other_io(path: Path, *, input_name: str = "x", width: int = 16, output: str = "probs") -> Path:
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [input_name], [output], axes=[1], keepdims=1)],
        "other",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_name": "pixels"}, "it has no input 'x'"),
        ({"width": 8}, "input 'x' has shape [N,8] there, [N,16] in the model"),
        ({"output": "scores"}, "it has no output 'probs'"),
    ],
)
def test_a_reference_with_other_inputs_or_outputs_is_one_line_exit_2(
    tmp_path: Path,
    qdq: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    other = _other_io(tmp_path / "other.onnx", **kwargs)
    out = tmp_path / "out"
    argv = ["optimize", str(qdq), "--data", str(data), "--reference", str(other), "--out", str(out)]
    code = run([*argv, "--time-budget", "20s", *FAST_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("honed: error: --reference") and message in err[0], err
    assert not out.exists()


def test_python_api_reference_is_checked_and_refused_with_a_recipe(tmp_path: Path, qdq: Path, data: Path) -> None:
    other = _other_io(tmp_path / "other.onnx", width=8)
    with pytest.raises(InvalidArgument, match="does not match the model"):
        optimize(qdq, out=tmp_path / "o", data=data, reference=other, **FAST)
    with pytest.raises(InvalidArgument, match="a --recipe replay judges nothing"):
        optimize(qdq, out=tmp_path / "o", reference=other, recipe=tmp_path / "recipe.json")
    assert not (tmp_path / "o").exists()


def test_the_reason_names_format_types_and_node_count() -> None:
    qop = QuantizationInfo("qoperator", {"MatMulInteger": 1}, ("uint8",))
    assert qop.reason() == "already quantized (QOperator uint8, 1 node)"
    qdq = QuantizationInfo("qdq", {"QuantizeLinear": 3, "DequantizeLinear": 5}, ("int8", "uint8"))
    assert qdq.reason() == "already quantized (QDQ int8/uint8, 8 nodes)"
