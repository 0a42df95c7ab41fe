"""Optimize reads calibration and eval data through the same data sets as ``honed bench``."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from optimize_models import tiny_classifier, tiny_data

from honed.data import open_dataset
from honed.model import load_model, model_io
from honed.search.datasource import DataSource


def test_synthetic_samples_do_not_depend_on_the_batch_they_are_read_in(tmp_path: Path) -> None:
    inputs, _ = model_io(load_model(tiny_classifier(tmp_path / "m.onnx")))
    source = DataSource(None, inputs, {}, synthetic_samples=8, seed=3)
    one_by_one = np.concatenate([b["x"] for b in source.batches(1)])
    by_four = np.concatenate([b["x"] for b in source.batches(4)])
    bench = np.concatenate([b["x"] for b in open_dataset(None, inputs, num_samples=8, seed=3).batches(4)])
    np.testing.assert_array_equal(by_four, bench)
    np.testing.assert_array_equal(one_by_one, by_four)
    assert by_four.shape[0] == 8
    assert source.describe(8) == {
        "source": "synthetic",
        "path": None,
        "sha256": "synthetic:seed=3:samples=8",
        "samples": 8,
        "samples_used": 8,
    }


def test_an_npz_source_survives_pickling_for_a_worker_process(tmp_path: Path) -> None:
    model = tiny_classifier(tmp_path / "m.onnx")
    inputs, _ = model_io(load_model(model))
    data = tiny_data(tmp_path / "calib.npz", 12)
    source = DataSource(data, inputs, {})
    again = pickle.loads(pickle.dumps(source))
    first, second = next(source.batches(5)), next(again.batches(5))
    np.testing.assert_array_equal(first["x"], second["x"])
    assert again.describe(5)["source"] == "npz" and again.samples == source.samples
