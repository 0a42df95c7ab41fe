"""Evaluate: fidelity of a candidate model against the original on eval data, and the accuracy gate.

``metrics`` holds pure numpy metric functions, ``fidelity`` streams them over batches, ``runner`` runs
the original model once and each candidate against it, ``gate`` decides pass or reject.
"""

from honed.evaluate.fidelity import METRICS, FidelityAccumulator, FidelityResult
from honed.evaluate.gate import (
    DEFAULT_BOUNDS,
    METRIC_NAMES,
    MIN_EVAL_SAMPLES,
    AccuracyGate,
    choose_metric,
    samples_needed,
)
from honed.evaluate.runner import BatchSource, ReferenceOutputs, evaluate_session, load_labels, self_fidelity

__all__ = [
    "DEFAULT_BOUNDS",
    "METRICS",
    "METRIC_NAMES",
    "MIN_EVAL_SAMPLES",
    "AccuracyGate",
    "BatchSource",
    "FidelityAccumulator",
    "FidelityResult",
    "ReferenceOutputs",
    "choose_metric",
    "evaluate_session",
    "load_labels",
    "samples_needed",
    "self_fidelity",
]
