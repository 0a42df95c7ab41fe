"""Streaming fidelity: accumulate the metrics of :mod:`honed.evaluate.metrics` over many batches.

:class:`OutputAccumulator` keeps running sums for one output; :class:`FidelityAccumulator` keeps one per
output plus the label counts, and :meth:`FidelityAccumulator.result` turns them into a
:class:`FidelityResult`, a plain value the gate reads and the report stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from honed.evaluate import metrics
from honed.evaluate.mask import applies
from honed.evaluate.user_metric import UserMetric, UserMetricError

Array = np.ndarray[Any, Any]

# Metric name (as on the command line) -> (FidelityResult per-output key, higher is better).
METRICS: dict[str, tuple[str, bool]] = {
    "agreement": ("agreement", True),
    "cosine": ("cosine_mean", True),
    "iou": ("iou", True),
    "rel-error": ("rel_error_mean", False),
    "sqnr": ("sqnr_db", True),
    "accuracy": ("accuracy", True),
    "pooled-cosine": ("pooled_cosine_mean", True),
    "eval": ("user_metric", True),  # a user's own metric (--eval); its bound says which way is better
}


def is_class_scores(shape: tuple[int, ...]) -> bool:
    """Whether an output of this (batch-first) shape reads as class scores: [N, C] with C >= 2."""
    return len(shape) == 2 and shape[-1] >= 2


@dataclass
class OutputAccumulator:
    """Running sums for one output across batches."""

    iou_threshold: float = 0.3
    items: int = 0
    agree: int = 0
    rows: int = 0
    cos_sum: float = 0.0
    cos_min: float = 1.0
    max_abs: float = 0.0
    abs_sum: float = 0.0
    elements: int = 0
    rel_sum: float = 0.0
    rel_max: float = 0.0
    signal: float = 0.0
    noise: float = 0.0
    inter: int = 0
    union: int = 0
    nonfinite: int = 0
    class_scores: bool = True
    pooled_items: int = 0
    pooled_sum: float = 0.0
    pooled_min: float = 1.0

    def update(self, reference: Array, candidate: Array, keep: Array | None = None) -> None:
        """Add one batch; ``keep`` ([batch, seq] booleans) leaves the padded positions of an output whose
        leading axes it matches out of every metric (per-item metrics see them as zeros in both)."""
        if reference.shape != candidate.shape:
            raise ValueError(f"shape {candidate.shape} differs from the original model's {reference.shape}")
        self.class_scores = self.class_scores and is_class_scores(tuple(reference.shape))
        if reference.ndim >= 3:
            pooled = metrics.pooled_cosine_per_item(reference, candidate, keep if applies(keep, reference) else None)
            if pooled.size:
                self.pooled_items += int(pooled.size)
                self.pooled_sum += float(np.nansum(pooled))
                self.pooled_min = min(self.pooled_min, float(np.nanmin(pooled)) if np.isfinite(pooled).any() else -1.0)
        if keep is not None and applies(keep, reference):
            tail = (1,) * (reference.ndim - 2)
            mask = keep.reshape(keep.shape + tail)
            items_ref = np.where(mask, reference, 0)
            items_cand = np.where(mask, candidate, 0)
            reference, candidate = reference[keep], candidate[keep]
        else:
            items_ref, items_cand = reference, candidate
        self.nonfinite += metrics.nonfinite_count(candidate)
        same, rows = metrics.top1_matches(reference, candidate)
        self.agree += same
        self.rows += rows
        cos = metrics.cosine_per_item(items_ref, items_cand)
        rel = metrics.relative_error_per_item(items_ref, items_cand)
        self.items += int(cos.size)
        if cos.size:
            self.cos_sum += float(np.nansum(cos))
            self.cos_min = min(self.cos_min, float(np.nanmin(cos)) if np.isfinite(cos).any() else -1.0)
            self.rel_sum += float(np.sum(rel))
            self.rel_max = max(self.rel_max, float(np.max(rel)))
        max_abs, abs_sum, n = metrics.abs_errors(reference, candidate)
        self.max_abs = max(self.max_abs, max_abs) if not math.isnan(max_abs) else math.inf
        self.abs_sum += abs_sum
        self.elements += n
        signal, noise = metrics.signal_and_noise(reference, candidate)
        self.signal += signal
        self.noise += noise
        inter, union = metrics.iou_counts(reference, candidate, self.iou_threshold)
        self.inter += inter
        self.union += union

    def summary(self) -> dict[str, float | int | bool | None]:
        items = max(self.items, 1)
        return {
            "agreement": self.agree / self.rows if self.rows else 1.0,
            "cosine_mean": self.cos_sum / items,
            "cosine_min": self.cos_min,
            "max_abs_error": self.max_abs,
            "mean_abs_error": self.abs_sum / self.elements if self.elements else 0.0,
            "rel_error_mean": self.rel_sum / items,
            "rel_error_max": self.rel_max,
            "sqnr_db": metrics.sqnr_db(self.signal, self.noise),
            "iou": self.inter / self.union if self.union else 1.0,
            "nonfinite": self.nonfinite,
            "class_scores": self.class_scores,
            "pooled_cosine_mean": self.pooled_sum / self.pooled_items if self.pooled_items else None,
            "pooled_cosine_min": self.pooled_min if self.pooled_items else None,
        }


@dataclass(frozen=True)
class FidelityResult:
    """How closely a candidate's outputs follow the original model's on the eval data.

    ``outputs`` maps each output name to its metrics (see :meth:`OutputAccumulator.summary`);
    ``accuracy``/``reference_accuracy`` are set only when labels were given; ``error`` says why the
    candidate could not be evaluated at all (it failed to run), and then the metrics are empty;
    ``stopped_early`` marks a result cut short because it could no longer pass (metrics over ``samples``);
    ``user_metric`` is the value of the user's own metric (``--eval``), when one was given.
    """

    samples: int
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    accuracy: float | None = None
    reference_accuracy: float | None = None
    error: str | None = None
    stopped_early: bool = False
    user_metric: float | None = None

    @property
    def nonfinite(self) -> int:
        return sum(int(o.get("nonfinite", 0)) for o in self.outputs.values())

    def value(self, metric: str) -> float | None:
        """The gate value of ``metric``: the worst over the outputs it applies to; None when it applies to none."""
        if self.error is not None:
            return None
        if metric == "accuracy":
            return self.accuracy
        if metric == "eval":
            return self.user_metric
        key, higher = METRICS[metric]
        values = [
            float(o[key])
            for o in self.outputs.values()
            if o.get(key) is not None and (metric != "agreement" or bool(o.get("class_scores")))
        ]
        if not values:
            return None
        return min(values) if higher else max(values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "outputs": {name: {k: _json_number(v) for k, v in o.items()} for name, o in self.outputs.items()},
            "accuracy": self.accuracy,
            "reference_accuracy": self.reference_accuracy,
            "nonfinite": self.nonfinite,
            "error": self.error,
            "stopped_early": self.stopped_early,
            "user_metric": self.user_metric,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FidelityResult:
        outputs = {
            name: {k: _from_json_number(v) for k, v in o.items()} for name, o in dict(data.get("outputs", {})).items()
        }
        return cls(
            samples=int(data["samples"]),
            outputs=outputs,
            accuracy=data.get("accuracy"),
            reference_accuracy=data.get("reference_accuracy"),
            error=data.get("error"),
            stopped_early=bool(data.get("stopped_early", False)),
            user_metric=data.get("user_metric"),
        )


class FidelityAccumulator:
    """Accumulates every output's metrics, and label matches for the first class-score output.

    With a ``user_metric`` it also keeps every batch's outputs (and labels) to call it on at the end.
    """

    def __init__(
        self, output_names: list[str], *, iou_threshold: float = 0.3, user_metric: UserMetric | None = None
    ) -> None:
        self._names = list(output_names)
        self._user = user_metric
        self._kept: list[tuple[dict[str, Array], dict[str, Array], Array | None]] = []
        self._acc = {name: OutputAccumulator(iou_threshold=iou_threshold) for name in self._names}
        self._samples = 0
        self._label_hits = 0
        self._ref_label_hits = 0
        self._label_rows = 0

    def update(
        self,
        reference: dict[str, Array],
        candidate: dict[str, Array],
        labels: Array | None = None,
        keep: Array | None = None,
    ) -> None:
        for name in self._names:
            if name not in candidate:
                raise ValueError(f"the candidate has no output {name!r}")
            self._acc[name].update(np.asarray(reference[name]), np.asarray(candidate[name]), keep)
        if self._user is not None:
            self._kept.append(({n: reference[n] for n in self._names}, {n: candidate[n] for n in self._names}, labels))
        first = np.asarray(reference[self._names[0]])
        self._samples += int(first.shape[0]) if first.ndim else 1
        if labels is not None:
            name = self._names[0]
            hits, rows = metrics.label_matches(candidate[name], labels)
            ref_hits, _ = metrics.label_matches(reference[name], labels)
            self._label_hits += hits
            self._ref_label_hits += ref_hits
            self._label_rows += rows

    def result(self, *, partial: bool = False) -> FidelityResult:
        """The metrics so far; the user's metric is called only on the full result (not when ``partial``)."""
        accuracy = self._label_hits / self._label_rows if self._label_rows else None
        ref_accuracy = self._ref_label_hits / self._label_rows if self._label_rows else None
        user_value, error = None, None
        if self._user is not None and self._kept and not partial:
            try:
                user_value = self.user_score()
            except UserMetricError as exc:
                error = str(exc)
        return FidelityResult(
            samples=self._samples,
            outputs={name: acc.summary() for name, acc in self._acc.items()},
            accuracy=accuracy,
            reference_accuracy=ref_accuracy,
            error=error,
            user_metric=user_value,
        )

    def user_score(self) -> float:
        """The user's metric on every batch seen so far (:class:`UserMetricError` when it misbehaves)."""
        if self._user is None:
            raise UserMetricError("no --eval metric was given")
        reference = {n: np.concatenate([r[n] for r, _, _ in self._kept]) for n in self._names}
        candidate = {n: np.concatenate([c[n] for _, c, _ in self._kept]) for n in self._names}
        chunks = [lab for _, _, lab in self._kept if lab is not None]
        labels: Array | None = np.concatenate(chunks) if len(chunks) == len(self._kept) else None
        return self._user.score(candidate, reference, labels)


def _json_number(value: Any) -> Any:
    """JSON has no Inf/NaN: store them as the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _from_json_number(value: Any) -> Any:
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value
