"""The tiny models the edge tests export and their bundles: ``scorer`` (x float32[?, 64] -> y float32[?, 32]) on
ONNX Runtime, and ``ir`` (x float32[?, 16] -> probs float32[?, 4]), an OpenVINO IR winner made by the real optimize
path (an nncf-int8 recipe replayed on OpenVINO at f32 with one thread), and ``onnx_on_openvino``, the same model as
an ONNX winner that was measured on OpenVINO (a graph-only recipe replayed with the same runtime)."""

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


def _replayed(folder: Path, passes: list[dict[str, object]], runtime: dict[str, object] | None = None) -> Path:
    """``folder/out``: the tiny classifier optimized by replaying ``passes`` on OpenVINO (``runtime``, by default
    ``IR_RUNTIME``)."""
    from honed.model.artifact import artifact_sha256
    from honed.runtime import RuntimeConfig
    from honed.search import optimize

    model = tiny_classifier(folder / "tiny.onnx")
    recipe = {
        "format": "honed-recipe/1",
        "source": {"sha256": artifact_sha256(model), "name": "tiny.onnx"},
        "passes": passes,
        "backend": "openvino",
        "runtime": RuntimeConfig(**(runtime or IR_RUNTIME)).to_dict(),  # type: ignore[arg-type]
        "calibration": {"source": "synthetic", "samples": 16, "samples_used": 16, "batch": 4},
        "output": {"sha256": None},
    }
    (folder / "recipe.json").write_text(json.dumps(recipe))
    optimize(model, out=folder / "out", recipe=folder / "recipe.json")
    return folder / "out"


@pytest.fixture(scope="session")
def onnx_on_openvino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An optimize output folder holding model.onnx whose recipe ran it on OpenVINO."""
    pytest.importorskip("openvino")
    from honed.passes import get_pass
    from honed.passes.base import PassContext

    params = get_pass("graph").resolve({}, PassContext("openvino"))
    out = _replayed(tmp_path_factory.mktemp("onnx-ov"), [{"name": "graph", "params": params}])
    assert (out / "model.onnx").is_file() and not (out / "model.xml").exists()
    return out


@pytest.fixture(scope="session")
def bf16_on_openvino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``onnx_on_openvino`` measured with OpenVINO's bf16 precision hint (which a CPU without BF16 runs in f32)."""
    pytest.importorskip("openvino")
    from honed.passes import get_pass
    from honed.passes.base import PassContext

    params = get_pass("graph").resolve({}, PassContext("openvino"))
    runtime = {**IR_RUNTIME, "options": {"INFERENCE_PRECISION_HINT": "bf16"}}
    return _replayed(tmp_path_factory.mktemp("bf16-ov"), [{"name": "graph", "params": params}], runtime)


@pytest.fixture(scope="session")
def static_on_openvino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``onnx_on_openvino`` with a copy compiled for batches of 3 (``static_shapes``), as a static winner records."""
    pytest.importorskip("openvino")
    from honed.passes import get_pass
    from honed.passes.base import PassContext

    params = get_pass("graph").resolve({}, PassContext("openvino"))
    runtime = {**IR_RUNTIME, "static_shapes": [{"x": [3, 16]}]}
    return _replayed(tmp_path_factory.mktemp("static-ov"), [{"name": "graph", "params": params}], runtime)


@pytest.fixture(scope="session")
def ir_winner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An optimize output folder holding model.xml + model.bin, its recipe and report."""
    pytest.importorskip("nncf")
    from honed.passes import get_pass
    from honed.passes.base import PassContext

    params = get_pass("nncf-int8").resolve({}, PassContext("openvino"))
    out = _replayed(tmp_path_factory.mktemp("ir"), [{"name": "nncf-int8", "params": params}])
    assert (out / "model.xml").is_file()
    return out


@pytest.fixture(scope="session")
def ir_bundle(tmp_path_factory: pytest.TempPathFactory, ir_winner: Path) -> Path:
    return export_edge(str(ir_winner), tmp_path_factory.mktemp("ir-export") / "bundle", measure=False).path
