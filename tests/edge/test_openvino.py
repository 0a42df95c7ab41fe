"""An OpenVINO IR winner as an edge bundle: model.xml + model.bin, openvino pinned instead of onnxruntime, and the
runner (in an interpreter where neither honed nor onnxruntime can be imported) compiling it with the recorded
precision hint and threads; its answers equal honed's own OpenVINO session."""

from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import IR_RUNTIME
from edge_runner import run_isolated, serving

from honed.cli.main import run
from honed.edge import EdgeManifest, export_edge, pinned_versions
from honed.model.artifact import artifact_sha256
from honed.registry import open_registry
from honed.runtime import create_session

pytest.importorskip("openvino")

X = np.random.default_rng(11).standard_normal((3, 16)).astype(np.float32)


def _honed_session(bundle: Path):  # type: ignore[no-untyped-def]
    manifest = EdgeManifest.read(bundle)
    return create_session(bundle / manifest.model.file, manifest.session.runtime_config())


def test_the_bundle_holds_the_ir_pins_openvino_and_records_precision_and_threads(
    ir_bundle: Path, ir_winner: Path
) -> None:
    manifest = EdgeManifest.read(ir_bundle)
    assert (manifest.model.file, manifest.model.format) == ("model.xml", "openvino-ir")
    assert {"model.xml", "model.bin"} <= set(manifest.files) and not (ir_bundle / "model.onnx").exists()
    assert manifest.source.sha256 == artifact_sha256(ir_winner / "model.xml")
    assert manifest.source.measured_backend == "openvino" and manifest.notes == ()
    pins = pinned_versions("openvino")
    assert (ir_bundle / "requirements.txt").read_text().split() == [
        f"openvino=={pins['openvino']}",
        f"numpy=={pins['numpy']}",
    ]
    assert manifest.runtime == pins
    assert manifest.session.backend == "openvino"
    options = manifest.session.options
    assert options["INFERENCE_PRECISION_HINT"] == IR_RUNTIME["options"]["INFERENCE_PRECISION_HINT"]  # type: ignore[index]
    assert options["INFERENCE_NUM_THREADS"] == str(IR_RUNTIME["intra_op_threads"])


def test_selftest_compiles_with_the_recorded_properties_without_honed_or_onnxruntime(
    ir_bundle: Path, tmp_path: Path
) -> None:
    done = run_isolated(ir_bundle, "selftest")
    assert done.returncode == 0, done.stderr
    assert "on openvino " in done.stdout and ", precision f32, 1 threads," in done.stdout
    # the runner passes the manifest's properties to OpenVINO as they are: another thread count is what it reports
    copy = Path(shutil.copytree(ir_bundle, tmp_path / "copy"))
    data = json.loads((copy / "manifest.json").read_text())
    data["session"]["options"]["INFERENCE_NUM_THREADS"] = "2"
    (copy / "manifest.json").write_text(json.dumps(data))
    done = run_isolated(copy, "selftest")
    assert done.returncode == 0 and ", precision f32, 2 threads," in done.stdout, done.stderr


def test_predict_and_serve_equal_honed_openvino_session(ir_bundle: Path, tmp_path: Path) -> None:
    want = _honed_session(ir_bundle).run({"x": X})["probs"]
    np.savez(tmp_path / "in.npz", x=X)
    done = run_isolated(ir_bundle, "predict", "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "o.npz"))
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "o.npz") as got:
        np.testing.assert_array_equal(got["probs"], want)
    body = {"inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP32", "data": X.reshape(-1).tolist()}]}
    with serving(ir_bundle) as (_, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/v2/models/tiny")
        assert json.loads(conn.getresponse().read())["platform"] == "openvino_ir"
        conn.request("POST", "/v2/models/tiny/infer", body=json.dumps(body))
        reply = conn.getresponse()
        assert reply.status == 200
        [out] = json.loads(reply.read())["outputs"]
        conn.close()
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(out["shape"]), want)


def test_changed_weights_are_refused_naming_model_bin(ir_bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(ir_bundle, tmp_path / "copy"))
    weights = bytearray((copy / "model.bin").read_bytes())
    weights[-1] ^= 0xFF
    (copy / "model.bin").write_bytes(bytes(weights))
    done = run_isolated(copy, "selftest")
    assert done.returncode == 1 and "model.bin was changed after export" in done.stderr


def test_an_ir_from_the_registry_and_a_format_it_cannot_take(
    ir_winner: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    with open_registry(url) as registry:
        version = registry.register(ir_winner, "tiny", actor="test")
    out = tmp_path / "bundle"
    assert run(["export", "edge", "tiny:1", "--registry", url, "--out", str(out), "--no-measure"]) == 0
    manifest = EdgeManifest.read(out)
    assert manifest.model.format == "openvino-ir" and manifest.source.sha256 == version.sha256
    assert manifest.session.options["INFERENCE_PRECISION_HINT"] == "f32"
    assert run_isolated(out, "selftest").returncode == 0
    capsys.readouterr()
    assert run(["export", "edge", str(ir_winner), "--out", str(tmp_path / "b2"), "--format", "ort"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is OpenVINO IR: it is bundled as IR, not --format ort" in err
    # a bare ONNX file asked for as IR is converted and runs on OpenVINO (the default config's threads)
    asked = export_edge(str(ir_winner.parent / "tiny.onnx"), tmp_path / "b3", model_format="openvino-ir", measure=False)
    assert (asked.manifest.model.format, asked.manifest.session.backend) == ("openvino-ir", "openvino")
    assert asked.manifest.model.format_reason.startswith("--format openvino-ir: the ONNX model converted to IR")
    assert run_isolated(asked.path, "selftest").returncode == 0


def test_an_onnx_winner_measured_on_openvino_is_bundled_as_ir_and_runs_there(
    onnx_on_openvino: Path, tmp_path: Path
) -> None:
    exported = export_edge(str(onnx_on_openvino), tmp_path / "bundle", measure=False)
    manifest = exported.manifest
    assert (manifest.model.file, manifest.model.format) == ("model.xml", "openvino-ir")
    assert manifest.model.format_reason.startswith("measured on OpenVINO: the ONNX model converted to IR")
    assert {"model.xml", "model.bin"} <= set(manifest.files) and not (exported.path / "model.onnx").exists()
    assert manifest.source.sha256 == artifact_sha256(onnx_on_openvino / "model.onnx") and manifest.notes == ()
    assert manifest.session.backend == "openvino" and manifest.session.options["INFERENCE_PRECISION_HINT"] == "f32"
    assert (exported.path / "requirements.txt").read_text().split()[0].startswith("openvino==")
    done = run_isolated(exported.path, "selftest")
    assert done.returncode == 0 and "on openvino " in done.stdout and ", 1 threads," in done.stdout, done.stderr
    # the answers are those of honed's own session on the ONNX winner with the recorded runtime
    from honed.search.recipe import Recipe

    recorded = Recipe.read(onnx_on_openvino / "recipe.json").runtime
    want = create_session(onnx_on_openvino / "model.onnx", recorded).run({"x": X})["probs"]
    np.savez(tmp_path / "in.npz", x=X)
    args = ("predict", "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "o.npz"))
    assert run_isolated(exported.path, *args).returncode == 0
    with np.load(tmp_path / "o.npz") as got:
        np.testing.assert_allclose(got["probs"], want, rtol=1e-5, atol=1e-6)
    # --format onnx keeps ONNX Runtime's format: it runs there, and the notes say where it was measured
    args = ("export", "edge", str(onnx_on_openvino), "--out", str(tmp_path / "ort"), "--format", "onnx")
    assert run([*args, "--no-measure"]) == 0
    on_ort = EdgeManifest.read(tmp_path / "ort")
    assert (on_ort.model.format, on_ort.session.backend) == ("onnx", "onnxruntime")
    assert on_ort.session.options == {} and "measured this model on openvino" in on_ort.notes[0]


def test_a_bf16_winner_compiles_in_its_bundle_as_honed_compiled_it(bf16_on_openvino: Path, tmp_path: Path) -> None:
    """The bf16 hint travels as it is: the runner's compiled model reports the precision OpenVINO gives the same
    IR and properties here (bf16 on a CPU with BF16, f32 on one without), and the selftest passes."""
    import openvino as ov

    exported = export_edge(str(bf16_on_openvino), tmp_path / "bundle", measure=False)
    options = dict(exported.manifest.session.options)
    assert options["INFERENCE_PRECISION_HINT"] == "bf16"
    compiled = ov.Core().compile_model(str(exported.path / "model.xml"), "CPU", options)
    expected = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = expected.get_type_name() if hasattr(expected, "get_type_name") else str(expected)
    done = run_isolated(exported.path, "selftest")
    assert done.returncode == 0, done.stderr
    assert f", precision {name}, 1 threads," in done.stdout


def test_an_openvino_winner_where_openvino_is_missing_says_how_to_bundle_it(
    onnx_on_openvino: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import honed.edge.bundle as bundle_module

    class Missing:
        def available(self) -> bool:
            return False

    monkeypatch.setattr(bundle_module, "get_backend", lambda name: Missing())
    assert run(["export", "edge", str(onnx_on_openvino), "--out", str(tmp_path / "b"), "--no-measure"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "measured on OpenVINO, which is not installed here" in err
    assert "--format ort" in err and not (tmp_path / "b").exists()


def test_a_static_shape_winner_compiles_its_static_copy_on_the_device_and_answers_every_batch(
    static_on_openvino: Path, tmp_path: Path
) -> None:
    bundle = export_edge(str(static_on_openvino), tmp_path / "bundle", measure=False).path
    manifest = EdgeManifest.read(bundle)
    assert manifest.session.static_shapes == ({"x": (3, 16)},)
    assert manifest.session.runtime_config().static_shapes == ({"x": (3, 16)},)
    done = run_isolated(bundle, "selftest")
    assert done.returncode == 0 and ", static 3x16" in done.stdout, done.stderr
    session = _honed_session(bundle)
    for rows in (3, 1):  # the static copy, then the model as it is
        x = X[:rows]
        np.savez(tmp_path / "in.npz", x=x)
        out = tmp_path / f"out-{rows}.npz"
        done = run_isolated(bundle, "predict", "--input", str(tmp_path / "in.npz"), "--output", str(out))
        assert done.returncode == 0, done.stderr
        with np.load(out) as got:
            np.testing.assert_allclose(got["probs"], session.run({"x": x})["probs"], rtol=1e-5, atol=1e-6)
