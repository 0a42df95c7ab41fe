"""honed export edge on tiny graphs: the bundle's files and manifest, the runner without honed, tampering,
predict against in-process ONNX Runtime, and bad input to the runner."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from edge_runner import SITE, run_isolated

from honed.edge import EDGE_SCHEMA, EdgeManifest, export_edge, pinned_versions
from honed.edge.runner_files import runner_source
from honed.errors import BackendError, DataError, InvalidArgument
from honed.model.loader import file_sha256
from tests.graphs import int_input_model


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def test_bundle_holds_model_sample_requirements_runner_and_hashes(bundle: Path, source: Path) -> None:
    manifest = EdgeManifest.read(bundle)
    data = json.loads((bundle / "manifest.json").read_text())
    assert data["schema"] == EDGE_SCHEMA
    assert EdgeManifest.from_dict(data, "manifest").to_dict() == data
    assert manifest.model.format in ("onnx", "ort") and manifest.model.file == f"model.{manifest.model.format}"
    assert manifest.model.format_reason
    assert manifest.source.kind == "model" and manifest.source.sha256 == file_sha256(source)
    assert manifest.session.graph_optimization == "all" and manifest.session.provider == "cpu"
    listed = set(manifest.files)
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    assert {f"honed_edge/{p.name}" for p in runner_source().glob("*.py")} <= listed
    assert all(file_sha256(bundle / rel) == sha for rel, sha in manifest.files.items())
    pins = pinned_versions()
    assert (bundle / "requirements.txt").read_text().split() == [
        f"onnxruntime=={pins['onnxruntime']}",
        f"numpy=={pins['numpy']}",
    ]
    assert manifest.runtime == pins
    [x] = manifest.model.inputs
    assert (x.name, x.dtype, x.shape) == ("x", "float32", (None, 64))
    if manifest.model.format == "ort":
        assert manifest.model.required_operators == "required_operators.config"
        listing = (bundle / "required_operators.config").read_text().splitlines()
        assert "# - model.ort" in listing
        assert [line for line in listing if not line.startswith("#")], listing  # at least one domain;opset;ops line


def test_manifest_refuses_another_schema_and_a_missing_field(bundle: Path) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    with pytest.raises(InvalidArgument, match="expected schema"):
        EdgeManifest.from_dict({**data, "schema": "honed.edge/0"}, "m.json")
    broken = {**data, "sample": {k: v for k, v in data["sample"].items() if k != "rtol"}}
    with pytest.raises(InvalidArgument, match="sample: missing 'rtol'"):
        EdgeManifest.from_dict(broken, "m.json")


def test_honed_is_not_importable_in_the_isolated_interpreter() -> None:
    """The check below means something only if honed really cannot be imported there."""
    code = f"import sys; sys.path[:0] = {SITE!r}; import honed"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "No module named 'honed'" in done.stderr


def test_selftest_passes_without_honed(bundle: Path) -> None:
    done = run_isolated(bundle, "selftest")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("selftest ok:") and done.stdout.count("\n") == 1


RUNTIME_MODULES = {"ort_engine.py": "onnxruntime", "ov_engine.py": "openvino"}


def test_runner_imports_only_the_standard_library_numpy_and_its_one_runtime() -> None:
    """Only ort_engine imports onnxruntime and only ov_engine openvino (session.py loads the one the manifest
    names), so a bundle's environment needs numpy and its own runtime."""
    for path in runner_source().glob("*.py"):
        runtime = {RUNTIME_MODULES[path.name]} if path.name in RUNTIME_MODULES else set()
        allowed = set(sys.stdlib_module_names) | {"numpy"} | runtime
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [str(node.module)]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


@pytest.mark.parametrize("victim", ["sample.npz", "honed_edge/session.py", "model"])
def test_a_changed_file_fails_selftest_and_serve_naming_it(bundle: Path, tmp_path: Path, victim: str) -> None:
    copy = _copy(bundle, tmp_path)
    if victim == "model":
        victim = EdgeManifest.read(copy).model.file
    path = copy / victim
    path.write_bytes(path.read_bytes() + b"\n")
    done = run_isolated(copy, "selftest")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert f"{victim} was changed after export" in done.stderr
    served = run_isolated(copy, "serve", "--port", "0")
    assert served.returncode == 1 and victim in served.stderr


def test_a_deleted_file_fails_selftest(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    (copy / "reference.npz").unlink()
    done = run_isolated(copy, "selftest")
    assert done.returncode == 1 and "reference.npz is missing" in done.stderr


def test_predict_npz_round_trip_equals_in_process_onnxruntime(bundle: Path, source: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(7).standard_normal((3, 64)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    done = run_isolated(bundle, "predict", "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz"))
    assert done.returncode == 0, done.stderr
    [want] = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with np.load(tmp_path / "out.npz") as got:
        assert list(got.files) == ["y"]
        np.testing.assert_allclose(got["y"], want, rtol=1e-5, atol=1e-6)


def test_predict_json_on_stdin(bundle: Path, source: Path) -> None:
    x = np.arange(128, dtype=np.float32).reshape(2, 64) / 100
    body = {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": x.ravel().tolist()}]}
    done = run_isolated(bundle, "predict", stdin=json.dumps(body))
    assert done.returncode == 0, done.stderr
    [out] = json.loads(done.stdout)["outputs"]
    [want] = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert out["name"] == "y" and out["shape"] == [2, 32] and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(out["data"], dtype=np.float32).reshape(2, 32), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"z": np.zeros((1, 64), np.float32)}, "missing x; unknown z"),
        ({"x": np.zeros((1, 64), np.float64)}, "input 'x' must be float32, got float64"),
        ({"x": np.zeros((1, 63), np.float32)}, "input 'x' must have shape ?x64, got 1x63"),
        ({"x": np.zeros(64, np.float32)}, "input 'x' must have shape ?x64, got 64"),
    ],
)
def test_predict_refuses_inputs_that_do_not_fit(bundle: Path, tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    done = run_isolated(bundle, "predict", "--input", str(tmp_path / "bad.npz"), "--output", str(tmp_path / "o.npz"))
    assert done.returncode == 2
    assert done.stderr.startswith("bad input: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.npz").exists()


def test_predict_refuses_a_missing_file_and_bad_json(bundle: Path, tmp_path: Path) -> None:
    done = run_isolated(bundle, "predict", "--input", str(tmp_path / "nope.npz"))
    assert done.returncode == 2 and "input file not found" in done.stderr
    done = run_isolated(bundle, "predict", stdin="{not json")
    assert done.returncode == 2 and "stdin is not JSON" in done.stderr


def test_force_replaces_an_earlier_bundle(bundle: Path, source: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    (copy / "stale.txt").write_text("from before")
    result = export_edge(str(source), copy, measure=False, force=True, model_format="onnx")
    assert not (copy / "stale.txt").exists() and result.manifest.model.file == "model.onnx"
    assert run_isolated(copy, "selftest").returncode == 0


def test_integer_inputs_and_a_given_sample(tmp_path: Path) -> None:
    model = int_input_model(tmp_path / "ints.onnx")
    ids = np.arange(32, dtype=np.int32).reshape(2, 16) % 7
    np.savez(tmp_path / "sample.npz", ids=ids)
    result = export_edge(
        str(model), tmp_path / "b", sample=tmp_path / "sample.npz", model_format="onnx", name="ints", measure=False
    )
    assert result.manifest.model.format == "onnx" and "--format onnx" in result.manifest.model.format_reason
    with np.load(result.path / "sample.npz") as recorded:
        np.testing.assert_array_equal(recorded["ids"], ids)
    done = run_isolated(result.path, "selftest")
    assert done.returncode == 0, done.stderr


def test_export_refuses_an_existing_folder_and_leaves_nothing_half_written(source: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("not a bundle")
    with pytest.raises(InvalidArgument, match="already exists"):
        export_edge(str(source), tmp_path / "taken", measure=False)
    with pytest.raises(InvalidArgument, match="--force replaces only a bundle"):
        export_edge(str(source), tmp_path / "taken", measure=False, force=True)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "not a bundle"
    np.savez(tmp_path / "wrong.npz", nope=np.zeros(1))
    with pytest.raises(DataError, match="the model takes x"):
        export_edge(str(source), tmp_path / "b", sample=tmp_path / "wrong.npz", measure=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "wrong.npz"]


def test_selftest_expect_pins_the_manifest_and_other_versions_warn(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    exported = file_sha256(copy / "manifest.json")
    assert run_isolated(copy, "selftest", "--expect", exported[:16]).returncode == 0
    data = json.loads((copy / "manifest.json").read_text())
    data["runtime"]["numpy"] = "0.1"
    (copy / "manifest.json").write_text(json.dumps(data))
    done = run_isolated(copy, "selftest")
    assert done.returncode == 0
    assert f"warning: numpy {np.__version__} is installed; the bundle was checked with 0.1" in done.stderr
    done = run_isolated(copy, "selftest", "--expect", exported[:16])
    assert done.returncode == 1 and f"not the expected {exported[:12]}" in done.stderr


def test_a_model_the_ort_converter_cannot_hold_stays_onnx_and_says_why(tmp_path: Path) -> None:
    from honed.edge.format import choose_format

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    choice = choose_format(broken, tmp_path / "work", {"graph_optimization": "all"})
    assert choice.format == "onnx" and choice.path == broken
    assert choice.reason.startswith("kept ONNX: the ORT format converter failed:")
    with pytest.raises(BackendError, match="ORT format converter failed"):
        choose_format(broken, tmp_path / "work2", {"graph_optimization": "all"}, "ort")
