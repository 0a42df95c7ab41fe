"""``honed optimize --register``: the source and the optimized model become versions with lineage."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.cli.main import run
from honed.model import file_sha256
from honed.registry import open_registry
from honed.registry.records import OptimizeGate
from tests.graphs import matmul_model


def test_optimize_registers_source_and_result_with_lineage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HONED_HOME", str(tmp_path / "home"))
    model = matmul_model(tmp_path / "mlp.onnx")
    out = tmp_path / "out"
    args = ["optimize", str(model), "--out", str(out), "--time-budget", "60s", "--passes", "graph", "--no-tune"]
    args += ["--backends", "onnxruntime", "--measure", "0.02", "--rounds", "2", "--no-cache", "--register", "mlp"]
    args += ["--metric", "cosine", "--min", "0.95"]
    code = run(args)
    err = capsys.readouterr().err
    assert code in (0, 3), err
    assert "registered mlp:2" in err and "optimized from mlp:1" in err

    reg = open_registry()
    source, optimized = reg.resolve("mlp:1"), reg.resolve("mlp:2")
    assert source.sha256 == file_sha256(model)
    assert optimized.sha256 == file_sha256(out / "model.onnx")
    assert optimized.parent == "mlp:1"
    assert optimized.recipe is not None and "passes" in optimized.recipe
    assert optimized.profile is not None and "winner_results" in optimized.profile
    assert optimized.optimize_gate == OptimizeGate("cosine", 0.95, None)  # what rollout start defaults to
    assert source.optimize_gate is None
    assert [v.ref for v in reg.lineage("mlp:2").ancestors] == ["mlp:1"]
    # the first optimized version becomes production; a later one leaves production where it is
    assert reg.aliases("mlp") == {"production": 2}
    reg.set_alias("mlp", "production", 1, actor="alice")
    assert run([*args[:3], str(tmp_path / "out2"), *args[4:]]) in (0, 3)
    assert reg.aliases("mlp") == {"production": 1}


def test_bad_register_name_fails_before_searching(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = matmul_model(tmp_path / "mlp.onnx")
    assert run(["optimize", str(model), "--out", str(tmp_path / "out"), "--register", "bad name!"]) == 2
    assert "name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
