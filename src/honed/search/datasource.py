"""Where calibration and eval batches come from, and what the report records about them.

A :class:`DataSource` is a :class:`honed.data.Dataset` (an .npz file or seeded synthetic inputs, the same ones
``honed bench`` reads) plus the identity the report and recipe keep: source, path, sha256, samples. It is plain,
picklable data, so a worker process rebuilds the same calibration stream from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from honed.data import open_dataset
from honed.model.loader import file_sha256
from honed.model.spec import TensorSpec

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
        self.synthetic = path is None
        self.dataset = open_dataset(path, specs, shapes=overrides, num_samples=synthetic_samples, seed=seed)
        self.samples = int(self.dataset.num_samples)
        self.sha256 = file_sha256(path) if path is not None else f"synthetic:seed={seed}:samples={synthetic_samples}"

    def batches(self, batch: int, limit: int | None = None) -> Iterator[dict[str, Array]]:
        return self.dataset.batches(batch, limit=limit)

    def describe(self, used: int) -> dict[str, Any]:
        return {
            "source": "synthetic" if self.synthetic else "npz",
            "path": str(self.path) if self.path is not None else None,
            "sha256": self.sha256,
            "samples": self.samples,
            "samples_used": used,
        }
