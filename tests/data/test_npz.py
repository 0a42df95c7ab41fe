from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from honed.data import NpzDataset, SyntheticDataset, batch_of, open_dataset, synthetic_feeds
from honed.errors import DataError, InvalidArgument
from honed.model import TensorSpec

SPECS = [TensorSpec("ids", 6, ("batch", 8)), TensorSpec("x", 1, ("batch", 3))]


def _write(tmp_path: Path, compressed: bool = False, **arrays: np.ndarray) -> Path:
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_batches_stream_every_sample_in_order(tmp_path: Path, compressed: bool) -> None:
    ids = np.arange(10 * 8, dtype=np.int32).reshape(10, 8)
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    ds = NpzDataset(_write(tmp_path, compressed, ids=ids, x=x), SPECS)
    assert ds.num_samples == 10
    chunks = list(ds.batches(4))
    assert [c["ids"].shape[0] for c in chunks] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([c["ids"] for c in chunks]), ids)
    np.testing.assert_array_equal(np.concatenate([c["x"] for c in chunks]), x)
    assert [c["x"].shape[0] for c in ds.batches(3, limit=5)] == [3, 2]


def test_batch_of_repeats_a_small_dataset(tmp_path: Path) -> None:
    ids = np.arange(3 * 8, dtype=np.int32).reshape(3, 8)
    x = np.zeros((3, 3), np.float32)
    ds = NpzDataset(_write(tmp_path, ids=ids, x=x), SPECS)
    batch = batch_of(ds, 7)
    assert batch["ids"].shape == (7, 8)
    np.testing.assert_array_equal(batch["ids"][3:6], ids)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"ids": np.zeros((2, 8), np.int32)}, "missing input(s) x"),
        (
            {"ids": np.zeros((2, 8), np.int32), "x": np.zeros((2, 3), np.float32), "z": np.zeros(2)},
            "unknown array(s) z",
        ),
        ({"ids": np.zeros((2, 8), np.int64), "x": np.zeros((2, 3), np.float32)}, "is int64 but the model wants int32"),
        ({"ids": np.zeros((2, 9), np.int32), "x": np.zeros((2, 3), np.float32)}, "has 9 at axis 1"),
        ({"ids": np.zeros((2, 8, 1), np.int32), "x": np.zeros((2, 3), np.float32)}, "first axis counts samples"),
        ({"ids": np.zeros((2, 8), np.int32), "x": np.zeros((3, 3), np.float32)}, "disagree on the number of samples"),
    ],
)
def test_data_that_does_not_fit_is_refused(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(DataError) as info:
        NpzDataset(_write(tmp_path, **arrays), SPECS)
    assert message in str(info.value)


def test_not_an_npz(tmp_path: Path) -> None:
    bad = tmp_path / "d.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not an \.npz"):
        NpzDataset(bad, SPECS)
    with pytest.raises(DataError, match="not found"):
        NpzDataset(tmp_path / "missing.npz", SPECS)
    with pytest.raises(DataError, match=r"must be an \.npz"):
        open_dataset(tmp_path / "d.csv", SPECS)


def test_bad_batch_size(tmp_path: Path) -> None:
    ds = NpzDataset(_write(tmp_path, ids=np.zeros((2, 8), np.int32), x=np.zeros((2, 3), np.float32)), SPECS)
    with pytest.raises(InvalidArgument):
        next(ds.batches(0))


def test_synthetic_feeds_respect_dtypes_and_ranges() -> None:
    specs = [
        TensorSpec("input_ids", 7, ("b", "s")),
        TensorSpec("attention_mask", 7, ("b", "s")),
        TensorSpec("token_type_ids", 7, ("b", "s")),
        TensorSpec("pixels", 10, ("b", 3)),
        TensorSpec("flag", 9, ("b",)),
    ]
    shapes = {"input_ids": (2, 5), "attention_mask": (2, 5), "token_type_ids": (2, 5), "pixels": (2, 3), "flag": (2,)}
    feeds = synthetic_feeds(specs, shapes, int_high=30)
    assert feeds["input_ids"].dtype == np.int64 and feeds["input_ids"].max() < 30 and feeds["input_ids"].min() >= 0
    assert (feeds["attention_mask"] == 1).all()
    assert (feeds["token_type_ids"] == 0).all()
    assert feeds["pixels"].dtype == np.float16 and feeds["pixels"].shape == (2, 3)
    assert feeds["flag"].dtype == np.bool_
    again = synthetic_feeds(specs, shapes, int_high=30)
    np.testing.assert_array_equal(feeds["input_ids"], again["input_ids"])


def test_synthetic_dataset_batches() -> None:
    ds = SyntheticDataset([TensorSpec("x", 1, ("batch", 4))], num_samples=5)
    assert [b["x"].shape for b in ds.batches(2)] == [(2, 4), (2, 4), (1, 4)]
    assert "synthetic" in ds.describe()
