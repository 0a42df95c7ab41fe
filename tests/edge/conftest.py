"""The tiny models the edge tests export and their bundles: ``scorer`` (x float32[?, 64] -> y float32[?, 32]) on
ONNX Runtime, and ``ir`` (x float32[?, 16] -> probs float32[?, 4]), an OpenVINO IR winner made by the real optimize
path (an nncf-int8 recipe replayed on OpenVINO at f32 with one thread)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.edge import export_edge
from tests.graphs import matmul_model
from tests.search.optimize_models import tiny_classifier

IR_RUNTIME = {"backend": "openvino", "intra_op_threads": 1, "options": {"INFERENCE_PRECISION_HINT": "f32"}}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return matmul_model(tmp_path_factory.mktemp("model") / "scorer.onnx")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    return export_edge(str(source), tmp_path_factory.mktemp("export") / "bundle", measure=False).path


@pytest.fixture(scope="session")
def ir_winner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An optimize output folder holding model.xml + model.bin, its recipe and report."""
    pytest.importorskip("nncf")
    from honed.model.artifact import artifact_sha256
    from honed.passes import get_pass
    from honed.passes.base import PassContext
    from honed.runtime import RuntimeConfig
    from honed.search import optimize

    folder = tmp_path_factory.mktemp("ir")
    model = tiny_classifier(folder / "tiny.onnx")
    recipe = {
        "format": "honed-recipe/1",
        "source": {"sha256": artifact_sha256(model), "name": "tiny.onnx"},
        "passes": [{"name": "nncf-int8", "params": get_pass("nncf-int8").resolve({}, PassContext("openvino"))}],
        "backend": "openvino",
        "runtime": RuntimeConfig(**IR_RUNTIME).to_dict(),
        "calibration": {"source": "synthetic", "samples": 16, "samples_used": 16, "batch": 4},
        "output": {"sha256": None},
    }
    (folder / "recipe.json").write_text(json.dumps(recipe))
    result = optimize(model, out=folder / "out", recipe=folder / "recipe.json")
    assert result.model_path == folder / "out" / "model.xml"
    return folder / "out"


@pytest.fixture(scope="session")
def ir_bundle(tmp_path_factory: pytest.TempPathFactory, ir_winner: Path) -> Path:
    return export_edge(str(ir_winner), tmp_path_factory.mktemp("ir-export") / "bundle", measure=False).path
