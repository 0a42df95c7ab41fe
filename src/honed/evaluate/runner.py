"""Streams eval batches through the original model once, then through each candidate, and compares.

:class:`ReferenceOutputs` runs the original model over the eval batches once and keeps its outputs as
``.npy`` files in a folder (memory stays at one batch); :func:`evaluate_session` replays the same batches
through a candidate session and accumulates its :class:`~honed.evaluate.fidelity.FidelityResult`.
A candidate that fails to run is a result with ``error`` set, not an exception: the search goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import DataError, HonedError
from honed.evaluate.fidelity import FidelityAccumulator, FidelityResult
from honed.evaluate.mask import MaskSpec
from honed.evaluate.user_metric import UserMetric
from honed.runtime.base import Session

Array = np.ndarray[Any, Any]
BatchSource = Callable[[], Iterator[dict[str, Array]]]
"""Each call returns a fresh iterator over the same input batches, in the same order."""


class ReferenceOutputs:
    """The original model's outputs on every eval batch, stored under ``folder``."""

    def __init__(self, batches: BatchSource, folder: Path, output_names: list[str], count: int, samples: int) -> None:
        self.batches = batches
        self.folder = folder
        self.output_names = output_names
        self.count = count
        self.samples = samples

    @classmethod
    def compute(cls, session: Session, batches: BatchSource, folder: Path) -> ReferenceOutputs:
        folder.mkdir(parents=True, exist_ok=True)
        names = [o.name for o in session.outputs]
        count = 0
        samples = 0
        for index, feeds in enumerate(batches()):
            outputs = session.run(feeds)
            for n, name in enumerate(names):
                np.save(folder / f"b{index:05d}_o{n}.npy", np.asarray(outputs[name]), allow_pickle=False)
            first = next(iter(feeds.values()))
            samples += int(first.shape[0]) if first.ndim else 1
            count += 1
        if count == 0:
            raise DataError("the eval data holds no samples")
        return cls(batches, folder, names, count, samples)

    @classmethod
    def cached(cls, session: Session, batches: BatchSource, folder: Path) -> ReferenceOutputs:
        """Like :meth:`compute`, but reuses a folder a previous run completed (its ``complete.json`` marker)."""
        marker = folder / "complete.json"
        if marker.is_file():
            try:
                meta = json.loads(marker.read_text())
                return cls(batches, folder, list(meta["outputs"]), int(meta["count"]), int(meta["samples"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged marker: compute again
        reference = cls.compute(session, batches, folder)
        marker.write_text(
            json.dumps({"outputs": reference.output_names, "count": reference.count, "samples": reference.samples})
        )
        return reference

    def load(self, index: int) -> dict[str, Array]:
        return {
            name: np.load(self.folder / f"b{index:05d}_o{n}.npy", allow_pickle=False)
            for n, name in enumerate(self.output_names)
        }

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each output on the first batch."""
        return {name: tuple(a.shape) for name, a in self.load(0).items()}


def evaluate_session(
    session: Session,
    reference: ReferenceOutputs,
    *,
    labels: Array | None = None,
    iou_threshold: float = 0.3,
    stop: Callable[[FidelityResult], bool] | None = None,
    mask: MaskSpec | None = None,
    user_metric: UserMetric | None = None,
) -> FidelityResult:
    """Run ``session`` on the eval batches and compare with ``reference``; labels are per sample, in order.

    ``stop`` sees the result so far after each batch; when it says True the evaluation ends there and the
    result carries ``stopped_early`` (the gate uses this to stop at the first NaN or a hopeless agreement).
    ``mask`` leaves padded positions out of the comparison; ``user_metric`` is scored on all the outputs.
    """
    acc = FidelityAccumulator(reference.output_names, iou_threshold=iou_threshold, user_metric=user_metric)
    start = 0
    try:
        for index, feeds in enumerate(reference.batches()):
            outputs = session.run(feeds)
            expected = reference.load(index)
            first = next(iter(feeds.values()))
            size = int(first.shape[0]) if first.ndim else 1
            batch_labels = labels[start : start + size] if labels is not None else None
            acc.update(expected, outputs, batch_labels, mask.keep(feeds) if mask is not None else None)
            start += size
            if stop is not None and start < reference.samples:
                partial = acc.result(partial=True)
                if stop(partial):
                    return replace(partial, stopped_early=True)
    except (HonedError, ValueError) as exc:
        return FidelityResult(samples=start, error=str(exc))
    return acc.result()


def self_fidelity(
    reference: ReferenceOutputs, *, labels: Array | None = None, user_metric: UserMetric | None = None
) -> FidelityResult:
    """The original model against itself (exact), from the stored outputs, without running anything."""
    acc = FidelityAccumulator(reference.output_names, user_metric=user_metric)
    start = 0
    for index in range(reference.count):
        outputs = reference.load(index)
        first = next(iter(outputs.values()))
        size = int(first.shape[0]) if first.ndim else 1
        acc.update(outputs, outputs, labels[start : start + size] if labels is not None else None)
        start += size
    return acc.result()


def load_labels(path: Path, samples: int) -> Array:
    """Labels from an ``.npy`` file or an ``.npz`` holding one array (or one named ``labels``), one per sample."""
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read labels from {path}: {exc}; give an .npy or .npz of integer labels") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if "labels" in keys:
                array = loaded["labels"]
            elif len(keys) == 1:
                array = loaded[keys[0]]
            else:
                raise DataError(f"{path} holds {len(keys)} arrays ({', '.join(keys)}); name the labels array 'labels'")
    else:
        array = loaded
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"labels in {path} must be integers (class indices), got {array.dtype}")
    if array.shape[0] < samples:
        raise DataError(f"{path} holds {array.shape[0]} labels but the eval data has {samples} samples; give one each")
    return np.asarray(array[:samples])
