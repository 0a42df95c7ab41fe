"""``honed export edge`` through the real CLI: from an optimize output folder, from a registry reference, the
measured cost (table, cost.json), and bad input (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edge_runner import run_isolated

from honed.cli.main import run
from honed.edge import COST_SCHEMA, EdgeManifest, SessionSettings, pinned_versions
from honed.model.loader import file_sha256
from honed.registry import open_registry
from honed.search import optimize
from honed.search.recipe import Recipe
from tests.graphs import matmul_model


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return matmul_model(tmp_path / "mlp.onnx", k=16, n=8)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_export_from_an_optimize_output_folder(tmp_path: Path, model: Path) -> None:
    result = optimize(
        model,
        out=tmp_path / "out",
        metric="cosine",
        minimum=0.99,
        time_budget="1m",
        passes=["graph"],
        tune_runtime=False,
        measure_s=0.02,
        final_rounds=2,
        backends=["onnxruntime"],
        cache_dir=tmp_path / "cache",
        html=False,
    )
    assert (tmp_path / "out" / "model.onnx").is_file(), result.exit_code
    assert run(["export", "edge", str(tmp_path / "out"), "--out", str(tmp_path / "bundle"), "--no-measure"]) == 0
    manifest = EdgeManifest.read(tmp_path / "bundle")
    recipe = Recipe.read(tmp_path / "out" / "recipe.json")
    assert manifest.source.kind == "optimize"
    assert manifest.source.recipe is not None and manifest.source.recipe["recipe_sha256"] == recipe.sha256()
    assert manifest.session == SessionSettings.from_runtime(recipe.runtime)
    assert manifest.name == "mlp"
    done = run_isolated(tmp_path / "bundle", "selftest")
    assert done.returncode == 0, done.stderr


def test_export_from_a_registry_reference(tmp_path: Path, model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    with open_registry(url) as registry:
        first = registry.register(model, "scorer", actor="test")
        version = registry.register(
            matmul_model(tmp_path / "v2.onnx", k=16, n=8, seed=1), "scorer", actor="test", parent=first.ref
        )
        registry.set_alias("scorer", "production", version.version, actor="test")
    out = tmp_path / "bundle"
    command = ["export", "edge", "scorer@production", "--registry", url, "--out", str(out), "--format", "onnx"]
    assert run([*command, "--no-measure"]) == 0
    manifest = EdgeManifest.read(out)
    assert (manifest.source.kind, manifest.source.ref, manifest.name) == ("registry", "scorer:2", "scorer")
    assert manifest.source.parent == "scorer:1"
    assert manifest.source.sha256 == version.sha256 and manifest.model.file == "model.onnx"
    assert run_isolated(out, "selftest").returncode == 0


def test_export_measures_and_reports_the_cost(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    command = ["export", "edge", str(model), "--out", str(out), "--latency-count", "20", "--versus-requests", "12"]
    assert run(command) == 0
    table = capsys.readouterr().out
    rows = ("bundle size", "environment size", "cold start to first answer", "peak RSS", "steady latency")
    for row in (*rows, "p50 against honed serve"):
        assert row in table
    cost = json.loads((out / "cost.json").read_text())
    assert cost["schema"] == COST_SCHEMA
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "cost.json"]
    assert cost["bundle_bytes"] == sum(p.stat().st_size for p in files)
    env = cost["environment"]
    pins = pinned_versions()
    assert env["method"] == "record"
    assert {f"onnxruntime=={pins['onnxruntime']}", f"numpy=={pins['numpy']}"} <= set(env["distributions"])
    assert env["bytes"] == sum(env["distributions"].values()) and env["bytes"] > 0
    assert len(cost["cold_start_runs_s"]) == 3 and all(s > 0 for s in cost["cold_start_runs_s"])
    assert min(cost["cold_start_runs_s"]) <= cost["cold_start_s"] <= max(cost["cold_start_runs_s"])
    assert cost["peak_rss_bytes"] > 0 and 0 < cost["p50_ms"] <= cost["p90_ms"] and cost["latency_count"] == 20
    assert "cost.json" not in EdgeManifest.read(out).files
    versus = cost["versus_serve"]
    assert versus["requests"] == 12 and versus["warmup"] == 10
    assert versus["runner_p50_ms"] > 0 and versus["serve_p50_ms"] > 0
    assert versus["ratio"] == pytest.approx(versus["runner_p50_ms"] / versus["serve_p50_ms"])


def test_export_json_output(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["export", "edge", str(model), "--out", str(tmp_path / "b"), "--no-measure", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cost"] is None and EdgeManifest.from_dict(data["manifest"], "stdout").name == "mlp"
    assert data["manifest_sha256"] == file_sha256(tmp_path / "b" / "manifest.json")


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("missing.onnx", [], "is neither an optimize output folder nor a model file"),
        ("nobody@production", ["--registry"], "nobody"),
        ("scorer:9", ["--registry"], "scorer"),
        ("bad ref!", ["--registry"], "invalid model name"),
    ],
)
def test_bad_sources_exit_2_with_one_line(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str], source: str, extra: list[str], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    with open_registry(url) as registry:
        registry.register(model, "scorer", actor="test")
    args = [*extra, url] if extra else []
    out = tmp_path / "bundle"
    assert run(["export", "edge", str(tmp_path / source) if not extra else source, "--out", str(out), *args]) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


def test_bad_folders_and_options_exit_2_and_write_nothing(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "bundle"
    assert run(["export", "edge", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "holds no model.onnx or model.xml" in _one_error_line(capsys)
    assert run(["export", "edge", str(model), "--out", str(out), "--format", "tflite"]) == 2
    assert "--format must be one of auto, onnx, ort, openvino-ir" in _one_error_line(capsys)
    wheels = tmp_path / "no-wheels"
    assert run(["export", "edge", str(model), "--out", str(out), "--format", "onnx", "--wheelhouse", str(wheels)]) == 2
    assert "is not a folder of wheels" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mlp.onnx"]
