"""End to end on the real Magika model: our features match Magika's own, and ``honed demo`` runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from honed.cli.main import run
from honed.demo import (
    DEMO_EVAL_SAMPLES,
    MagikaFeatureConfig,
    build_magika_dataset,
    build_magika_datasets,
    file_features,
    magika_features,
    magika_model_dir,
    stdlib_files,
)
from honed.runtime import create_session

magika = pytest.importorskip("magika")

pytestmark = pytest.mark.e2e


def test_features_give_magikas_own_predictions() -> None:
    model_dir = magika_model_dir()
    config = MagikaFeatureConfig.from_model_dir(model_dir)
    labels = json.loads((model_dir / "config.min.json").read_text())["target_labels_space"]
    session = create_session(model_dir / "model.onnx")
    reference = magika.Magika()
    compared = 0
    for path in stdlib_files(24):
        row = file_features(path, config)
        if row is None:
            continue
        (probs,) = session.run({"bytes": row[None]}).values()
        assert labels[int(np.argmax(probs))] == str(reference.identify_path(path).prediction.dl.label), path
        compared += 1
    assert compared >= 20


def test_stripping_and_padding_follow_magika() -> None:
    config = MagikaFeatureConfig(beg_size=4, end_size=4, padding_token=256, block_size=16)
    # The head loses leading whitespace and is padded at the end; the tail loses trailing whitespace,
    # keeps its last bytes and is padded at the start.
    assert magika_features(b" ab\n", b" ab\n", config).tolist() == [97, 98, 10, 256, 256, 32, 97, 98]
    assert magika_features(b"abcdef", b"abcdef", config).tolist() == [97, 98, 99, 100, 99, 100, 101, 102]


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        ["demo", "--out", str(tmp_path), "--samples", "16", "--duration", "0.2s", "--batch", "1,4", "--no-optimize"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Where the time goes" in out and "Conv" in out
    data = np.load(tmp_path / "magika-inputs.npz")["bytes"]
    assert data.shape == (16, 2048) and data.dtype == np.int32 and data.max() <= 256
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert [r["batch"] for r in bench["results"]] == [1, 4]
    assert bench["model"]["flops_per_item"] == pytest.approx(0.7334e9, rel=1e-3)
    assert "magika-inputs.npz" in bench["data"]
    assert not (tmp_path / "optimized").exists()


def test_demo_optimizes_within_its_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        ["demo", "--out", str(tmp_path), "--samples", "8", "--duration", "0.1s", "--batch", "1", "--time-budget", "20s"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "optimized" / "report.json").read_text())
    assert report["gate"]["metric"] == "agreement" and report["gate"]["min"] == 0.99
    assert report["data"]["eval"]["samples"] == DEMO_EVAL_SAMPLES
    # Whatever won stays inside the budget, and the baseline was always a candidate.
    assert report["winner"]["metric_value"] >= 0.99
    assert report["candidates"][0]["status"] == "baseline"
    assert (tmp_path / "optimized" / "model.onnx").is_file() and (tmp_path / "optimized" / "report.html").is_file()
    assert "report:" in out and "report.html" in out


def test_calibration_and_eval_files_are_disjoint(tmp_path: Path) -> None:
    calib, evals = build_magika_datasets(tmp_path, calibration=20, evaluation=40, config=MagikaFeatureConfig())
    c = np.load(calib)["bytes"]
    e = np.load(evals)["bytes"]
    assert c.shape == (20, 2048) and e.shape == (40, 2048)
    assert not {row.tobytes() for row in c} & {row.tobytes() for row in e}


def test_dataset_builder_refuses_nothing_to_read(tmp_path: Path) -> None:
    out = build_magika_dataset(tmp_path / "x.npz", samples=3, config=MagikaFeatureConfig())
    assert np.load(out)["bytes"].shape == (3, 2048)


def test_demo_refuses_a_bad_time_budget_before_working(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["demo", "--out", str(tmp_path), "--time-budget", "soon"])
    assert code == 2
    assert "--time-budget" in capsys.readouterr().err
    assert not (tmp_path / "magika-inputs.npz").exists()
