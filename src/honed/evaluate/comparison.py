"""The comparison every judgment of a candidate goes through: what is compared, by which metric, to what bound.

A :class:`Comparison` holds the :class:`~honed.evaluate.gate.AccuracyGate`, the attention mask that leaves
padded positions out (:mod:`honed.evaluate.mask`), a user's own metric (:mod:`honed.evaluate.user_metric`)
and the IoU threshold. The search judges candidates with :meth:`Comparison.judge`, and the sensitive-layer
fallback ranks layers with :meth:`Comparison.relative_error` and accepts models through the same ``judge``,
so a model is never measured one way and accepted another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from honed.evaluate import metrics
from honed.evaluate.fidelity import FidelityResult
from honed.evaluate.gate import AccuracyGate
from honed.evaluate.mask import MaskSpec, applies
from honed.evaluate.runner import ReferenceOutputs, evaluate_session, self_fidelity
from honed.evaluate.user_metric import UserMetric, UserMetricError
from honed.runtime.base import Session

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Comparison:
    """How a candidate's outputs are compared with the original's, and the bound they must meet."""

    gate: AccuracyGate
    mask: MaskSpec | None = None
    user_metric: UserMetric | None = None
    iou_threshold: float = 0.3

    def evaluate(self, session: Session, reference: ReferenceOutputs, labels: Array | None = None) -> FidelityResult:
        """``session`` against ``reference`` on the eval batches, stopping once it can no longer pass."""
        total = reference.samples
        return evaluate_session(
            session,
            reference,
            labels=labels,
            iou_threshold=self.iou_threshold,
            stop=lambda partial: self.gate.hopeless(partial, total),
            mask=self.mask,
            user_metric=self.user_metric,
        )

    def check(self, result: FidelityResult) -> str | None:
        """None when ``result`` passes the gate; otherwise why not."""
        return self.gate.check(result)

    def judge(self, session: Session, reference: ReferenceOutputs, labels: Array | None = None) -> str | None:
        """Evaluate ``session`` and check it: None when it passes, else the reason it is rejected."""
        return self.check(self.evaluate(session, reference, labels))

    def original(self, reference: ReferenceOutputs, labels: Array | None = None) -> FidelityResult:
        """The original model against itself: exact, and the user's metric called once on it (which raises a
        :class:`~honed.evaluate.user_metric.UserMetricError` when the metric misbehaves, before any search)."""
        result = self_fidelity(reference, labels=labels if self.user_metric else None, user_metric=self.user_metric)
        if result.error is not None:
            raise UserMetricError(f"{result.error} (called on the original model's own outputs)")
        return result

    def relative_error(
        self, reference: Mapping[str, Array], candidate: Mapping[str, Array], feeds: Mapping[str, Array]
    ) -> float:
        """Mean over outputs of ||candidate - reference|| / ||reference|| on one batch, padded positions left out;
        +inf when an output holds NaN or Inf at a compared position."""
        return batch_relative_error(reference, candidate, feeds, self.mask)

    def to_dict(self) -> dict[str, Any]:
        """What decides a candidate's fidelity and verdict (the report's gate section and cache keys use it)."""
        return {
            **self.gate.to_dict(),
            "mask": self.mask.to_dict() if self.mask is not None else None,
            "eval": self.user_metric.to_dict() if self.user_metric is not None else None,
            "iou_threshold": self.iou_threshold,
        }


def batch_relative_error(
    reference: Mapping[str, Array],
    candidate: Mapping[str, Array],
    feeds: Mapping[str, Array],
    mask: MaskSpec | None = None,
) -> float:
    """Mean over outputs of :func:`masked_relative_error` on one batch (``mask`` read from ``feeds``)."""
    keep = mask.keep(feeds) if mask is not None else None
    errors = [
        masked_relative_error(np.asarray(want), np.asarray(candidate[name]), keep) for name, want in reference.items()
    ]
    return float(np.mean(errors)) if errors else 0.0


def masked_relative_error(reference: Array, candidate: Array, keep: Array | None) -> float:
    """:func:`~honed.evaluate.metrics.relative_error` over the positions ``keep`` marks (all when it does not
    apply to this output's shape)."""
    if applies(keep, reference):
        return metrics.relative_error(reference[keep], candidate[keep])
    return metrics.relative_error(reference, candidate)
