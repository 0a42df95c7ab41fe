from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from honed.cli.main import run
from tests.graphs import int_input_model, matmul_model


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return matmul_model(tmp_path_factory.mktemp("m") / "mlp.onnx")


def test_json_output(mlp: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = run(["bench", str(mlp), "--batch", "1,3", "--threads", "1", "-n", "5", "--json", "--out", str(out)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in data["results"]] == [1, 3]
    assert json.loads(out.read_text())["results"][1]["batch"] == 3


def test_table_output_with_profile(mlp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["bench", str(mlp), "-n", "5", "--profile", "--duration", "0.2s", "--iterations", "3"]) == 2
    assert "not both" in capsys.readouterr().err
    assert run(["bench", str(mlp), "-n", "5", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "p99" in out and "items/s" in out and "Where the time goes" in out and "Gemm" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "1,x"], "--batch takes whole numbers"),
        (["--batch", "0"], "batch sizes must be >= 1"),
        (["--duration", "fast"], "--duration takes a duration"),
        (["--duration", "0s"], "longer than zero"),
        (["--provider", "cuda"], "execution provider 'cuda' is not available"),
        (["--provider", "tpu"], "provider must be one of"),
        (["--backend", "tvm"], "backend must be one of"),
        (["--shape", "nope=1x64"], "unknown input(s) nope"),
        (["--shape", "x=1xA"], "bad --shape"),
        (["--affinity", "0,0"], "affinity lists a CPU twice"),
    ],
)
def test_bad_flags(mlp: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["bench", str(mlp), "-n", "1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_model_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    for path, message in [(tmp_path / "nope.onnx", "not found"), (tmp_path, "not a model file"), (junk, "not")]:
        assert run(["bench", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_mismatched_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = int_input_model(tmp_path / "m.onnx")
    data = tmp_path / "d.npz"
    np.savez(data, ids=np.zeros((2, 16), np.float32))
    assert run(["bench", str(model), "--data", str(data), "-n", "1"]) == 2
    assert "wants int32" in capsys.readouterr().err


def test_an_optimize_output_runs_at_its_recorded_runtime_unless_a_flag_says_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openvino")
    from honed.search import optimize

    model = matmul_model(tmp_path / "mlp.onnx")
    out = tmp_path / "out"
    optimize(model, out=out, time_budget="1m", passes=["graph"], tune_runtime=False, measure_s=0.02, final_rounds=2)
    recipe = json.loads((out / "recipe.json").read_text())
    # the runtime an OpenVINO winner would record: BF16 hint, two threads, a copy compiled for batch 3
    x = json.loads(run_json(["inspect", str(model), "--json"], capsys))["inputs"][0]
    static = {x["name"]: [3, *x["shape"][1:]]}
    recipe["runtime"] = {"backend": "openvino", "intra_op_threads": 2, "static_shapes": [static]}
    recipe["runtime"]["options"] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    (out / "recipe.json").write_text(json.dumps(recipe))

    data = json.loads(run_json(["bench", str(out), "--batch", "1,3", "-n", "3", "--json"], capsys))
    assert data["runtime"]["backend"] == "openvino" and data["runtime"]["static_shapes"] == [static]
    assert data["runtime"]["options"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert [r["threads"] for r in data["results"]] == [2, 2]

    flags = ["--backend", "onnxruntime", "--graph-opt", "basic", "--no-spinning"]
    data = json.loads(run_json(["bench", str(out), "-n", "3", "--json", *flags], capsys))
    runtime = data["runtime"]
    assert runtime["backend"] == "onnxruntime" and runtime["graph_optimization"] == "basic"
    assert runtime["spinning"] is False and runtime["options"] == {} and "static_shapes" not in runtime

    # a recipe beside a model it did not make (a replay recipe kept next to its source) is not that model's
    other = tmp_path / "source"
    other.mkdir()
    (other / "model.onnx").write_bytes(model.read_bytes())  # the source optimize started from
    (other / "recipe.json").write_text(json.dumps(recipe))
    data = json.loads(run_json(["bench", str(other / "model.onnx"), "-n", "3", "--json"], capsys))
    assert data["runtime"]["backend"] == "onnxruntime" and "static_shapes" not in data["runtime"]

    (out / "recipe.json").write_text('{"format": "something else"}')
    assert run(["bench", str(out), "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert "recipe.json: not a honed recipe" in err and len(err.strip().splitlines()) == 1


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert run(args) == 0
    return capsys.readouterr().out
