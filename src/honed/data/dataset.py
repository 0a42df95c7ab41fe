"""Datasets: the one shape every consumer (bench, calibration, evaluation) reads model inputs through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from honed.data.npz import NpzDataset
from honed.data.span import samples_to_read
from honed.data.synthetic import synthetic_feeds
from honed.errors import DataError
from honed.model.spec import TensorSpec, concrete_shapes


class Dataset(Protocol):
    """Samples of model inputs, read in batches along the first axis."""

    specs: list[TensorSpec]
    num_samples: int

    def batches(self, batch_size: int, *, limit: int | None = None) -> Iterator[dict[str, np.ndarray[Any, Any]]]: ...

    def describe(self) -> str: ...


class SyntheticDataset:
    """``num_samples`` deterministic synthetic samples; ``shapes`` give one sample's dims (first axis = 1)."""

    def __init__(
        self,
        specs: list[TensorSpec],
        *,
        num_samples: int = 64,
        shapes: dict[str, tuple[int, ...]] | None = None,
        seed: int = 0,
        int_high: int | None = None,
    ) -> None:
        self.specs = list(specs)
        self.num_samples = num_samples
        self.seed = seed
        self.int_high = int_high
        self._sample_shapes = concrete_shapes(self.specs, shapes, batch=1)

    def describe(self) -> str:
        return f"synthetic ({self.num_samples} samples, seed {self.seed})"

    def batches(self, batch_size: int, *, limit: int | None = None) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        total = samples_to_read(self.num_samples, batch_size, limit)
        for start in range(0, total, batch_size):
            # Each sample has its own seed, so sample i is the same whichever batch size reads it.
            samples = [self._sample(i) for i in range(start, min(start + batch_size, total))]
            yield {name: np.concatenate([s[name] for s in samples]) for name in samples[0]}

    def _sample(self, index: int) -> dict[str, np.ndarray[Any, Any]]:
        return synthetic_feeds(self.specs, self._sample_shapes, seed=self.seed + index, int_high=self.int_high)


def open_dataset(
    path: str | Path | None,
    specs: list[TensorSpec],
    *,
    shapes: dict[str, tuple[int, ...]] | None = None,
    num_samples: int = 64,
    seed: int = 0,
    int_high: int | None = None,
) -> Dataset:
    """The ``.npz`` at ``path``, or synthetic samples when ``path`` is None (integers below ``int_high``)."""
    if path is None:
        return SyntheticDataset(specs, num_samples=num_samples, shapes=shapes, seed=seed, int_high=int_high)
    p = Path(path)
    if p.suffix != ".npz":
        raise DataError(f"{p}: data must be an .npz file of input arrays (numpy.savez(path, **{{name: array}}))")
    return NpzDataset(p, specs)


def batch_of(dataset: Dataset, batch_size: int) -> dict[str, np.ndarray[Any, Any]]:
    """Exactly ``batch_size`` samples, repeating the data set when it holds fewer."""
    parts: list[dict[str, np.ndarray[Any, Any]]] = []
    have = 0
    if dataset.num_samples < 1:
        raise DataError(f"{dataset.describe()} holds no samples")
    while have < batch_size:
        for chunk in dataset.batches(min(batch_size - have, dataset.num_samples), limit=batch_size - have):
            parts.append(chunk)
            have += next(iter(chunk.values())).shape[0] if chunk else 0
    return {name: np.concatenate([p[name] for p in parts])[:batch_size] for name in parts[0]}
