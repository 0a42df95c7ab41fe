"""nncf-int8: NNCF's OpenVINO backend quantizes OpenVINO's model with the user's calibration batches into IR
(``model.xml`` + ``model.bin``) that OpenVINO runs in INT8, the same bytes in every process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from honed.evaluate import metrics
from honed.model.artifact import artifact_sha256, file_hashes
from honed.passes import PassContext, PassError, get_pass
from honed.passes.nncf import is_encoder
from honed.passes.tiny_models import make_attention, make_cnn, make_mlp
from honed.runtime import RuntimeConfig, create_session, get_backend
from honed.search import optimize
from tests.search.optimize_models import tiny_classifier

pytest.importorskip("nncf")
pytest.importorskip("openvino")


# the rest of the graph at f32, and at bf16 where this CPU runs it (an AVX2-only CPU does not)
_PRECISIONS = tuple(p for p in ("f32", "bf16") if p in get_backend("openvino").precisions())


def _batches() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(0)
    for _ in range(8):
        yield {"x": rng.normal(size=(4, 16)).astype(np.float32)}


def test_nncf_int8_writes_ir_that_runs_on_openvino_close_to_fp32(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx")
    nncf_pass = get_pass("nncf-int8")
    assert nncf_pass.artifact == "openvino-ir"
    ctx = PassContext(target_backend="openvino", calibration=_batches, work_dir=tmp_path)
    assert nncf_pass.skip_reason(ctx) is None
    assert nncf_pass.skip_reason(PassContext(target_backend="onnxruntime", calibration=_batches)) is not None
    assert "calibration" in (nncf_pass.skip_reason(PassContext(target_backend="openvino")) or "")
    with pytest.raises(PassError, match="ends a pipeline"):
        nncf_pass.run(onnx.load(str(source)), {"subset_size": 8}, ctx)
    xml = nncf_pass.export(source, {"subset_size": 8}, ctx, tmp_path / "q" / "model.onnx")
    assert xml == tmp_path / "q" / "model.xml" and xml.with_suffix(".bin").is_file()
    assert "FakeQuantize" in xml.read_text()  # INT8 where OpenVINO fuses it
    x = np.random.default_rng(1).normal(size=(32, 16)).astype(np.float32)
    ref = create_session(source).run({"x": x})["probs"]
    for precision in _PRECISIONS:
        config = RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": precision})
        out = create_session(xml, config).run({"x": x})["probs"]
        assert metrics.nonfinite_count(out) == 0
        assert float(metrics.cosine_per_item(ref, out).mean()) > 0.95
    # a folder holding the IR loads like one holding model.onnx
    assert create_session(tmp_path / "q", RuntimeConfig(backend="openvino")).inputs[0].name == "x"


def test_encoders_get_the_transformer_scheme_and_others_do_not() -> None:
    assert is_encoder(make_attention())
    assert not is_encoder(make_mlp()) and not is_encoder(make_cnn())


_BUILD_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
import numpy as np
from honed.model.artifact import file_hashes
from honed.passes import PassContext, PassError, get_pass
from honed.passes.tiny_models import calibration_for, make_attention

model = make_attention()
ctx = PassContext(target_backend="openvino", calibration=calibration_for(model), work_dir=Path(sys.argv[1]))
xml = get_pass("nncf-int8").export(model, {}, ctx, Path(sys.argv[1]) / "model.xml")
print(json.dumps(file_hashes(xml)))
"""


def test_the_ir_has_the_same_bytes_in_another_process(tmp_path: Path) -> None:
    from honed.passes.tiny_models import calibration_for

    model = make_attention()
    ctx = PassContext(target_backend="openvino", calibration=calibration_for(model), work_dir=tmp_path)
    # a process that has made other OpenVINO nodes first: its node-name counter is elsewhere
    get_pass("nncf-int8").export(
        make_mlp(), {}, PassContext("openvino", calibration=calibration_for(make_mlp())), tmp_path / "m.xml"
    )
    here = file_hashes(get_pass("nncf-int8").export(model, {}, ctx, tmp_path / "a" / "model.xml"))
    (tmp_path / "b").mkdir()
    there = subprocess.run(
        [sys.executable, "-c", _BUILD_IN_A_FRESH_PROCESS, str(tmp_path / "b")],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ},
    )
    assert json.loads(there.stdout.strip().splitlines()[-1]) == here


def _recipe(source: Path, tmp_path: Path) -> Path:
    recipe = {
        "format": "honed-recipe/1",
        "source": {"sha256": artifact_sha256(source), "name": source.name},
        "passes": [{"name": "nncf-int8", "params": get_pass("nncf-int8").resolve({}, PassContext("openvino"))}],
        "backend": "openvino",
        "runtime": RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": _PRECISIONS[-1]}).to_dict(),
        "calibration": {"source": "synthetic", "samples": 16, "samples_used": 16, "batch": 4},
        "output": {"sha256": None},
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def test_an_openvino_recipe_replays_to_the_same_hashes(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx")
    first = optimize(source, out=tmp_path / "one", recipe=_recipe(source, tmp_path))
    assert first.model_path == tmp_path / "one" / "model.xml"
    assert (tmp_path / "one" / "model.bin").is_file() and not (tmp_path / "one" / "model.onnx").exists()
    written = json.loads((tmp_path / "one" / "recipe.json").read_text())
    assert written["output"]["sha256"] == artifact_sha256(first.model_path)
    assert "<honed_recipe_sha256 value=" in first.model_path.read_text()  # provenance in the IR's rt_info
    again = optimize(source, out=tmp_path / "two", recipe=tmp_path / "one" / "recipe.json")
    assert again.report["reproduced"] is True and again.report["expected_sha256"] == written["output"]["sha256"]
    assert file_hashes(again.model_path) == file_hashes(first.model_path)
    # the replayed IR serves at the recipe's precision
    session = create_session(tmp_path / "two", RuntimeConfig.from_dict(written["runtime"]))
    out = session.run({"x": np.ones((2, 16), np.float32)})
    assert out["probs"].shape == (2, 4)


def _guarded_attention() -> onnx.ModelProto:
    """scores -> Where(mask, 0, -inf) added -> Softmax -> Where(IsNaN(p), 0, p) -> MatMul, as SDPA exports."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Constant", [], ["ninf"], value=helper.make_tensor("ninf", TensorProto.FLOAT, [], [-np.inf])),
        helper.make_node("Where", ["mask", "zero", "ninf"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
        helper.make_node("IsNaN", ["p"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "p"], ["safe"]),
        helper.make_node("MatMul", ["safe", "v"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "guarded",
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 4, 4]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 1, 4]),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dropping_the_attention_guard_keeps_every_row_with_a_key(tmp_path: Path) -> None:
    import onnxruntime as ort

    from honed.passes.nncf import drop_attention_guards

    model = _guarded_attention()
    dropped = drop_attention_guards(model)
    assert [n.op_type for n in dropped.graph.node].count("IsNaN") == 0
    assert "IsNaN" in [n.op_type for n in model.graph.node]  # the input is left alone
    assert drop_attention_guards(dropped) is dropped  # nothing left to drop
    rng = np.random.default_rng(0)
    mask = np.array([[[True, True, False, False]], [[False, False, False, False]]])  # item 1: every key masked
    feeds = {
        "scores": rng.normal(size=(2, 4, 4)).astype(np.float32),
        "mask": mask,
        "v": rng.normal(size=(2, 4, 3)).astype(np.float32),
    }
    run = {
        name: ort.InferenceSession(m.SerializeToString()).run(None, feeds)[0]
        for name, m in (("kept", model), ("dropped", dropped))
    }
    assert np.isfinite(run["dropped"]).all()
    np.testing.assert_allclose(run["dropped"][0], run["kept"][0], rtol=1e-6)  # a row with keys: unchanged
    np.testing.assert_allclose(run["kept"][1], 0.0)  # all keys masked: the guard gave zeros


def test_the_search_tries_the_attention_guard_both_ways_only_where_there_is_one() -> None:
    nncf_pass = get_pass("nncf-int8")
    ctx = PassContext(target_backend="openvino", calibration=_batches)
    space = nncf_pass.search_space(ctx)
    assert [p["attention_guard"] for p in space] == ["drop", "keep"]
    assert nncf_pass.resolve({}, ctx)["attention_guard"] == "keep"  # recipes written before replay unchanged
    assert nncf_pass.skip_reason(ctx, space[0], _guarded_attention()) is None
    assert "no NaN guard" in (nncf_pass.skip_reason(ctx, space[0], make_mlp()) or "")
    assert nncf_pass.skip_reason(ctx, space[1], make_mlp()) is None
