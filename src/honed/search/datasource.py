"""Where calibration and eval batches come from: an .npz file or seeded synthetic inputs, re-iterable.

A :class:`DataSource` is plain, picklable data (path, specs, shape overrides, seed), so a worker process can
rebuild the same calibration stream from it; it also says what the report records about the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from honed.data import NpzDataset, synthetic_feeds
from honed.model.loader import file_sha256
from honed.model.spec import TensorSpec, concrete_shapes

Array = np.ndarray[Any, Any]


class DataSource:
    """Batches from ``path`` (an .npz) or, when ``path`` is None, ``synthetic_samples`` seeded synthetic samples."""

    def __init__(
        self,
        path: Path | None,
        specs: list[TensorSpec],
        overrides: dict[str, tuple[int, ...]],
        *,
        synthetic_samples: int = 0,
        seed: int = 0,
    ) -> None:
        self.path = path
        self.specs = specs
        self.overrides = overrides
        self.seed = seed
        self.synthetic_samples = synthetic_samples
        if path is not None:
            self.dataset: NpzDataset | None = NpzDataset(path, specs)
            self.samples = int(self.dataset.num_samples)
            self.sha256 = file_sha256(path)
        else:
            self.dataset = None
            self.samples = synthetic_samples
            self.sha256 = f"synthetic:seed={seed}:samples={synthetic_samples}"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["dataset"] = None  # reopened lazily in the process that unpickles it
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.path is not None:
            self.dataset = NpzDataset(self.path, self.specs)

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return concrete_shapes(self.specs, self.overrides, batch=batch)

    def batches(self, batch: int, limit: int | None = None) -> Iterator[dict[str, Array]]:
        total = self.samples if limit is None else min(limit, self.samples)
        if self.dataset is not None:
            yield from self.dataset.batches(batch, limit=total)
            return
        for index, start in enumerate(range(0, total, batch)):
            size = min(batch, total - start)
            yield synthetic_feeds(self.specs, self.shapes(size), seed=self.seed + index)

    def describe(self, used: int) -> dict[str, Any]:
        return {
            "source": "npz" if self.path is not None else "synthetic",
            "path": str(self.path) if self.path is not None else None,
            "sha256": self.sha256,
            "samples": self.samples,
            "samples_used": used,
        }
