"""Evaluate: fidelity of a candidate model against the original on eval data, and the accuracy gate.

``metrics`` holds pure numpy metric functions, ``fidelity`` streams them over batches, ``runner`` runs
the original model once and each candidate against it, ``gate`` decides pass or reject, ``mask`` finds the
attention mask whose padded positions are left out, ``user_metric`` loads a user's own metric, and
``comparison`` ties them into the one value every judgment goes through.
"""

from honed.evaluate.comparison import Comparison
from honed.evaluate.fidelity import METRICS, FidelityAccumulator, FidelityResult
from honed.evaluate.gate import (
    DEFAULT_BOUNDS,
    METRIC_NAMES,
    MIN_EVAL_SAMPLES,
    AccuracyGate,
    choose_metric,
    samples_needed,
)
from honed.evaluate.mask import MaskSpec, choose_mask
from honed.evaluate.runner import BatchSource, ReferenceOutputs, evaluate_session, load_labels, self_fidelity
from honed.evaluate.user_metric import UserMetric, UserMetricError, load_user_metric

__all__ = [
    "DEFAULT_BOUNDS",
    "METRICS",
    "METRIC_NAMES",
    "MIN_EVAL_SAMPLES",
    "AccuracyGate",
    "BatchSource",
    "Comparison",
    "FidelityAccumulator",
    "FidelityResult",
    "MaskSpec",
    "ReferenceOutputs",
    "UserMetric",
    "UserMetricError",
    "choose_mask",
    "choose_metric",
    "evaluate_session",
    "load_labels",
    "load_user_metric",
    "samples_needed",
    "self_fidelity",
]
