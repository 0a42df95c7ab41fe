"""``honed import``: the happy paths print the verification and write model.onnx + import.json; every bad input is
one line on stderr, exit 2, and nothing written; --register lands the import in a SQLite registry with its record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from honed.cli.main import run
from honed.intake import ImportRecord
from honed.registry import open_registry
from tests.intake.conftest import fitted

Data = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


@pytest.fixture(scope="module")
def joblib_file(tmp_path_factory: pytest.TempPathFactory, features: Data) -> Path:
    joblib = pytest.importorskip("joblib", reason="scikit-learn models are saved with joblib")
    pytest.importorskip("skl2onnx", reason="the scikit-learn importer needs skl2onnx (pip install 'honed[import]')")
    X, y = features
    path = tmp_path_factory.mktemp("sk") / "pipeline.joblib"
    joblib.dump(fitted("pipeline", X, y), path)
    return path


def _bad(args: list[str], capsys: pytest.CaptureFixture[str], out: Path) -> str:
    """Run ``honed import ...`` expecting bad input: exit 2, one stderr line, no output folder; the line."""
    assert run(["import", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("honed: error: "), err
    assert not out.exists()
    return lines[0]


def test_sklearn_with_a_sample_prints_and_writes(
    joblib_file: Path, features: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "X.npy"
    np.save(sample, features[0][:10])
    out = tmp_path / "out"
    args = ["import", "sklearn", str(joblib_file), "--trust-pickle", "--sample", str(sample), "--opset", "15"]
    assert run([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "skl2onnx" in text and "verified on sample X.npy (10 sample(s)) at batch 10, 11" in text
    assert "probabilities" in text and "[?, 2]" in text and "input X: FLOAT [?, 5]" in text
    record = ImportRecord.read(out / "import.json")
    assert record.source == str(joblib_file) and record.verification.samples == 10 and record.opset == 15
    assert (out / "model.onnx").is_file() and sorted(p.name for p in out.iterdir()) == ["import.json", "model.onnx"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind


def test_register_lands_the_import_with_its_record(
    joblib_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    out = tmp_path / "out"
    args = ["import", "sklearn", str(joblib_file), "--trust-pickle", "--out", str(out), "--json"]
    assert run([*args, "--register", "scorer", "--registry", url]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert "registered scorer:1" in captured.err
    with open_registry(url) as reg:
        version = reg.resolve("scorer")
        # what optimize --register does with its source: the same file is the imported version, record and all
        again, created = reg.register_with_status(out, "scorer", actor="test@host")
    assert not created and again.version == version.version and again.recipe == version.recipe
    assert version.sha256 == printed["onnx_sha256"] == ImportRecord.read(out).onnx_sha256
    assert version.recipe is not None and version.recipe["import"]["schema"] == "honed.import/1"
    assert version.recipe["import"]["verification"]["ok"] is True
    assert version.recipe["import"]["framework"] == "sklearn" and "imported-from:sklearn" in version.tags


def test_a_pickle_without_trust_is_refused(
    joblib_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _bad(["sklearn", str(joblib_file)], capsys, tmp_path / "out")
    assert "is a pickle" in line and "--trust-pickle" in line


def test_sklearn_bad_inputs(
    joblib_file: Path, features: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trusted = ["sklearn", str(joblib_file), "--trust-pickle"]
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, features[0][:, :3])
    assert "must have 5 columns" in _bad([*trusted, "--sample", str(narrow)], capsys, tmp_path / "o1")
    words = tmp_path / "words.npy"
    np.save(words, np.array([["a"] * 5] * 4))
    assert "give numbers" in _bad([*trusted, "--sample", str(words)], capsys, tmp_path / "o2")
    named = tmp_path / "named.npz"
    np.savez(named, features=features[0], extra=features[0])
    assert "missing input(s) X" in _bad([*trusted, "--sample", str(named)], capsys, tmp_path / "o3")
    assert "not a .npy or .npz" in _bad([*trusted, "--sample", str(joblib_file)], capsys, tmp_path / "o4")
    assert "expected a .joblib" in _bad(["sklearn", str(narrow), "--trust-pickle"], capsys, tmp_path / "o5")
    assert "invalid model name" in _bad([*trusted, "--register", "no spaces"], capsys, tmp_path / "o6")


def test_torch_from_the_cli(cnn_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(["import", "torch", str(cnn_files["pt2"]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "torch.onnx (dynamo)" in text and "note: the batch axis of x is fixed" in text
    data = json.loads((out / "import.json").read_text())
    assert data["converter"] == "torch.onnx (dynamo)" and data["verification"]["ok"] is True
    assert data["source"] == str(cnn_files["pt2"]) and data["verification"]["inputs"] == "the example inputs"
    assert data["inputs"][0]["shape"] == [2, 3, 8, 8]  # the program was saved with a fixed batch: it stays so
    assert data["verification"]["outputs"][0]["max_abs_error"] < 1e-6 and data["quantization"] is None
    assert ImportRecord.read(out).to_dict() == data


def test_torch_bad_inputs(cnn_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pt2 = str(cnn_files["pt2"])
    assert "model file not found" in _bad(["torch", str(tmp_path / "none.pt2")], capsys, tmp_path / "o1")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"not torch")
    assert "unknown PyTorch file type '.onnx'" in _bad(["torch", str(onnx_file)], capsys, tmp_path / "o2")
    fake = tmp_path / "fake.pt2"
    fake.write_bytes(b"not a program")
    assert "is not a torch.export program" in _bad(["torch", str(fake)], capsys, tmp_path / "o3")
    assert "keeps no example inputs" in _bad(["torch", str(cnn_files["pt"])], capsys, tmp_path / "o4")
    wrong_name = tmp_path / "wrong_name.npz"
    np.savez(wrong_name, image=np.zeros((2, 3, 8, 8), np.float32))
    line = _bad(["torch", pt2, "--sample", str(wrong_name)], capsys, tmp_path / "o5")
    assert "missing input(s) x; unknown array(s) image" in line
    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, x=np.zeros((2, 3, 5), np.float32))
    assert "cannot run on the given inputs" in _bad(
        ["torch", pt2, "--sample", str(wrong_shape)], capsys, tmp_path / "o6"
    )
    wrong_dtype = tmp_path / "wrong_dtype.npz"
    np.savez(wrong_dtype, x=np.zeros((2, 3, 8, 8), np.int64))
    assert "cannot run on the given inputs" in _bad(
        ["torch", pt2, "--sample", str(wrong_dtype)], capsys, tmp_path / "o7"
    )
    assert "--input-shape" in _bad(["torch", str(cnn_files["pt"]), "--input-shape", "2xthree"], capsys, tmp_path / "o8")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert run(["import", "torch", pt2, "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_hf_bad_inputs(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_bert / "config.json").read_text())
    assert "holds no weights" in _bad(["hf", str(no_weights)], capsys, tmp_path / "o1")
    assert "model folder not found" in _bad(["hf", str(tmp_path / "nowhere")], capsys, tmp_path / "o2")
    floats = tmp_path / "floats.npz"
    ids = np.zeros((2, 4), np.float32)
    np.savez(floats, input_ids=ids, attention_mask=ids, token_type_ids=ids)
    assert "must hold int values" in _bad(["hf", str(tiny_bert), "--sample", str(floats)], capsys, tmp_path / "o3")
    assert "unknown --task" in _bad(["hf", str(tiny_bert), "--task", "translation"], capsys, tmp_path / "o4")
