"""The demo's Magika winner as an edge bundle: optimized on features of real files (as ``honed demo`` does), exported
with one real file's features as the selftest sample, and the runner, without honed, labels real files as the
``magika`` package itself does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edge_runner import run_isolated

from honed.cli.main import run
from honed.edge import EdgeManifest
from honed.search.recipe import Recipe

magika = pytest.importorskip("magika")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def winner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from honed.demo import DEMO_MIN_AGREEMENT, MagikaFeatureConfig, build_magika_datasets, magika_model_dir
    from honed.search import optimize

    folder = tmp_path_factory.mktemp("magika")
    model_dir = magika_model_dir()
    config = MagikaFeatureConfig.from_model_dir(model_dir)
    calib, evals = build_magika_datasets(folder / "data", calibration=16, evaluation=100, config=config)
    result = optimize(
        model_dir / "model.onnx",
        out=folder / "out",
        data=calib,
        eval_data=evals,
        metric="agreement",
        minimum=DEMO_MIN_AGREEMENT,
        batch=1,
        time_budget="1m",
        passes=["graph"],
        tune_runtime=False,
        measure_s=0.05,
        final_rounds=2,
        backends=["onnxruntime"],
        cache_dir=folder / "cache",
        html=False,
    )
    assert result.model_path == folder / "out" / "model.onnx"
    with np.load(evals) as archive:
        np.savez(folder / "sample.npz", bytes=archive["bytes"][:1])
    return folder


def test_the_demos_magika_winner_exports_and_labels_real_files_as_magika_does(winner: Path, tmp_path: Path) -> None:
    from honed.demo import MagikaFeatureConfig, file_features, magika_model_dir, stdlib_files

    bundle = tmp_path / "bundle"
    command = ["export", "edge", str(winner / "out"), "--out", str(bundle), "--sample", str(winner / "sample.npz")]
    assert run([*command, "--no-measure"]) == 0
    manifest = EdgeManifest.read(bundle)
    [x], [y] = manifest.model.inputs, manifest.model.outputs
    assert (x.name, x.dtype, x.shape) == ("bytes", "int32", (None, 2048))
    assert (y.name, y.dtype, y.shape[-1]) == ("target_label", "float32", 214)
    assert manifest.source.recipe is not None
    assert manifest.source.recipe["recipe_sha256"] == Recipe.read(winner / "out" / "recipe.json").sha256()
    done = run_isolated(bundle, "selftest")
    assert done.returncode == 0, done.stderr

    model_dir = magika_model_dir()
    config = MagikaFeatureConfig.from_model_dir(model_dir)
    labels = json.loads((model_dir / "config.min.json").read_text())["target_labels_space"]
    files = [p for p in stdlib_files(40) if file_features(p, config) is not None][:12]
    np.savez(tmp_path / "files.npz", bytes=np.stack([file_features(p, config) for p in files]))  # type: ignore[misc]
    done = run_isolated(bundle, "predict", "--input", str(tmp_path / "files.npz"), "--output", str(tmp_path / "o.npz"))
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "o.npz") as archive:
        got = [labels[int(i)] for i in np.argmax(archive["target_label"], axis=1)]
    reference = magika.Magika()
    assert got == [str(reference.identify_path(p).prediction.dl.label) for p in files]
