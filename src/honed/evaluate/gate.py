"""The accuracy gate: which metric decides, its bound, and whether a candidate passes.

:func:`choose_metric` settles ``auto`` from the kind of the model's outputs and says why;
:class:`AccuracyGate` holds the metric and its ``min``/``max`` bound and judges a
:class:`~honed.evaluate.fidelity.FidelityResult`. Non-finite outputs (NaN/Inf) always fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from honed.errors import InvalidArgument
from honed.evaluate.fidelity import METRICS, FidelityResult, is_class_scores

METRIC_NAMES = (*(m for m in METRICS if m != "eval"), "auto")
"""What ``--metric`` takes; a user's own metric comes with ``--eval FILE.py:FUNCTION`` instead."""

# The bound each metric gets when the user gives neither --min nor --max.
DEFAULT_BOUNDS: dict[str, tuple[str, float]] = {
    "agreement": ("min", 0.99),
    "cosine": ("min", 0.99),
    "iou": ("min", 0.9),
    "rel-error": ("max", 0.01),
    "sqnr": ("min", 30.0),
    "accuracy": ("min", 0.0),  # replaced by "the original model's accuracy - 0.01" once it is known
    "pooled-cosine": ("min", 0.99),
}


def choose_metric(
    metric: str, output_shapes: dict[str, tuple[int, ...]], *, has_labels: bool = False
) -> tuple[str, str]:
    """The concrete metric for ``metric`` (which may be ``auto``) and a sentence saying why."""
    if metric not in METRIC_NAMES:
        raise InvalidArgument(f"--metric must be one of {', '.join(METRIC_NAMES)}; got {metric!r}")
    if metric == "accuracy" and not has_labels:
        raise InvalidArgument("--metric accuracy needs labels: pass --labels labels.npy (one label per eval sample)")
    if metric == "pooled-cosine" and output_shapes and not any(len(s) >= 3 for s in output_shapes.values()):
        shapes = ", ".join(f"{n} {list(s)}" for n, s in output_shapes.items())
        raise InvalidArgument(
            f"--metric pooled-cosine needs an output of shape [batch, seq, hidden] to pool; this model has {shapes}"
        )
    if metric != "auto":
        return metric, f"{metric} (chosen with --metric)"
    if not output_shapes:
        return "cosine", "cosine (auto: the model's outputs are unknown)"
    first_name, first_shape = next(iter(output_shapes.items()))
    if has_labels and is_class_scores(first_shape):
        return "accuracy", f"accuracy (auto: labels given and output {first_name!r} holds class scores)"
    if is_class_scores(first_shape):
        return "agreement", f"agreement (auto: output {first_name!r} holds class scores, shape {list(first_shape)})"
    return "cosine", f"cosine (auto: output {first_name!r} is a tensor of shape {list(first_shape)}, not class scores)"


@dataclass(frozen=True)
class AccuracyGate:
    """``metric`` must be >= ``min`` and/or <= ``max``; ``reason`` explains how the metric was chosen;
    ``name`` is what a user's own metric (``metric == "eval"``) is called (``FILE.py:FUNCTION``)."""

    metric: str
    min: float | None = None
    max: float | None = None
    reason: str = ""
    name: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidArgument(f"unknown metric {self.metric!r}; choose from: {', '.join(METRICS)}")
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or not math.isfinite(value)):
                raise InvalidArgument(f"--{name} must be a finite number, got {value!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidArgument(f"--min {self.min} is above --max {self.max}: no candidate could pass")
        if self.metric == "eval" and self.min is None and self.max is None:
            raise InvalidArgument("--eval needs a bound: give --min (or --max when lower values are better)")

    @classmethod
    def with_defaults(cls, metric: str, minimum: float | None, maximum: float | None, reason: str = "") -> AccuracyGate:
        """A gate, using the metric's default bound when neither ``minimum`` nor ``maximum`` is given."""
        if minimum is None and maximum is None:
            side, bound = DEFAULT_BOUNDS[metric]
            if side == "min":
                minimum = bound
            else:
                maximum = bound
        return cls(metric, minimum, maximum, reason)

    @property
    def higher_is_better(self) -> bool:
        if self.metric == "eval":
            return self.min is not None
        return METRICS[self.metric][1]

    @property
    def label(self) -> str:
        """The metric as the report names it: the user's ``FILE.py:FUNCTION`` for ``eval``."""
        return self.name or self.metric

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{self.label} >= {self.min:g}")
        if self.max is not None:
            parts.append(f"{self.label} <= {self.max:g}")
        return " and ".join(parts)

    def check(self, result: FidelityResult) -> str | None:
        """None when ``result`` passes; otherwise why it is rejected (a sentence for the report)."""
        if result.error is not None:
            return f"failed to run: {result.error}"
        if result.nonfinite:
            return f"{result.nonfinite} NaN/Inf value(s) in the outputs"
        value = result.value(self.metric)
        if value is None:
            return f"metric {self.label} does not apply to this model's outputs"
        if math.isnan(value):
            return f"{self.label} is NaN"
        early = f" (stopped after {result.samples} samples: it could no longer pass)" if result.stopped_early else ""
        if self.min is not None and value < self.min:
            return f"{self.label} {value:.4g} < {self.min:g}{early}"
        if self.max is not None and value > self.max:
            return f"{self.label} {value:.4g} > {self.max:g}"
        return None

    def hopeless(self, partial: FidelityResult, total_samples: int) -> bool:
        """Whether a partly evaluated candidate can no longer pass, whatever the remaining samples hold.

        True once any output holds NaN/Inf, or once more rows disagree (agreement) or are wrong (accuracy)
        than the bound allows over all ``total_samples``; other metrics are averages and never stop early.
        """
        if partial.nonfinite:
            return True
        if self.min is None or self.metric not in ("agreement", "accuracy") or partial.samples == 0:
            return False
        value = partial.value(self.metric)
        if value is None:
            return False
        wrong = (1.0 - value) * partial.samples
        return wrong > (1.0 - self.min) * total_samples + 1e-9

    def margin(self, result: FidelityResult) -> float | None:
        """How far ``result`` is inside (+) or outside (-) the bound, in the metric's units."""
        value = result.value(self.metric)
        if value is None or math.isnan(value) or result.nonfinite:
            return None
        margins = []
        if self.min is not None:
            margins.append(value - self.min)
        if self.max is not None:
            margins.append(self.max - value)
        return min(margins) if margins else None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "min": self.min, "max": self.max, "reason": self.reason, "name": self.name}


MIN_EVAL_SAMPLES = 8


def samples_needed(gate: AccuracyGate) -> int:
    """Eval samples the gate needs to mean anything.

    For a fraction (agreement, accuracy, IoU) with bound ``min`` < 1, one disagreement moves the value by
    ``1/n``, so ``n`` must be at least ``1 / (1 - min)`` for the data to tell a model that meets the bound
    from one that misses it by one sample; never fewer than :data:`MIN_EVAL_SAMPLES`.
    """
    if gate.metric in ("agreement", "accuracy", "iou") and gate.min is not None and 0 < gate.min < 1:
        return max(MIN_EVAL_SAMPLES, math.ceil(round(1.0 / (1.0 - gate.min), 6)))
    return MIN_EVAL_SAMPLES
