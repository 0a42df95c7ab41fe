"""NNCF's accuracy-controlled INT8 of an OpenVINO model, judged by honed's own gate.

:func:`quantize_with_gate` runs ``nncf.quantize_with_accuracy_control`` on an ``openvino.Model``: NNCF quantizes
the model, then keeps layers in float, most harmful first, until its validation function says the model is back
inside the allowed drop. The validation function here is the search's judge: each compiled model NNCF offers is
evaluated through the gate's :class:`~honed.evaluate.comparison.Comparison` against the original model's reference
outputs (mask, user metric and all), and the allowed drop is the distance from the original's own score to the
gate's bound, so NNCF stops where the gate would accept. It takes and returns the OpenVINO model, whatever pass
produced it; it needs ``nncf`` and ``openvino`` (``pip install 'honed[openvino]'``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from honed.evaluate.comparison import Comparison
from honed.evaluate.runner import ReferenceOutputs
from honed.passes.base import CalibrationSource, PassError
from honed.runtime.base import Session, SessionBase

Array = np.ndarray[Any, Any]


class _Compiled(SessionBase):
    """An ``openvino.CompiledModel`` NNCF hands over, run as a honed session with the original's specs."""

    def __init__(self, compiled: Any, like: Session) -> None:
        super().__init__(like.inputs, like.outputs, like.config)
        self._compiled = compiled

    def run(self, feeds: Mapping[str, Array]) -> dict[str, Array]:
        results = self._compiled(dict(feeds))
        return {spec.name: np.asarray(results[i]) for i, spec in enumerate(self._outputs)}

    def end_profiling(self) -> None:
        return None


@dataclass(frozen=True)
class GatedQuantization:
    """What :func:`quantize_with_gate` returns: the quantized ``model`` (``openvino.Model``), the gate's metric
    value NNCF's last validation saw, whether the gate accepts that model, and how many validations ran."""

    model: Any
    value: float | None
    accepted: bool
    validations: int


def gate_score(comparison: Comparison, session: Session, reference: ReferenceOutputs, labels: Array | None) -> float:
    """The gate's metric of ``session``, signed so higher is better (NNCF's convention); -inf when it cannot
    be scored (a failed run, NaN/Inf outputs, a metric that does not apply)."""
    result = comparison.evaluate(session, reference, labels)
    value = result.value(comparison.gate.metric)
    if result.error is not None or result.nonfinite or value is None or math.isnan(value):
        return -math.inf
    return value if comparison.gate.higher_is_better else -value


def allowed_drop(comparison: Comparison, original: float) -> float:
    """How far below the original's own (signed) score the gate's bound lies: NNCF's absolute ``max_drop``."""
    gate = comparison.gate
    bound = gate.min if gate.higher_is_better else gate.max
    if bound is None:
        raise PassError(f"the gate on {gate.label} has no bound NNCF's accuracy control can aim at")
    signed = bound if gate.higher_is_better else -bound
    return max(original - signed, 0.0)


def quantize_with_gate(
    ov_model: Any,
    calibration: CalibrationSource,
    comparison: Comparison,
    reference: ReferenceOutputs,
    original: Session,
    *,
    labels: Array | None = None,
    subset_size: int = 300,
    max_iterations: int = 30,
    options: Mapping[str, Any] | None = None,
) -> GatedQuantization:
    """``ov_model`` quantized by ``nncf.quantize_with_accuracy_control`` on ``calibration`` batches, every
    candidate judged by ``comparison`` against ``reference`` (the original model's eval outputs; ``original``
    is a session of it, for its input and output specs). ``options`` go to NNCF as they are (``preset``,
    ``model_type``, ``ignored_scope``, ...). Raises :class:`PassError` when NNCF is missing or fails."""
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise PassError("nncf and openvino are needed; install them with: pip install 'honed[openvino]'") from exc
    names = [spec.name for spec in original.inputs]

    def batches() -> Iterator[dict[str, Array]]:
        for batch in calibration():
            yield {name: np.ascontiguousarray(batch[name]) for name in names}

    own = gate_score(comparison, original, reference, labels)
    if not math.isfinite(own):
        raise PassError("the original model cannot be scored by the gate; accuracy control has nothing to aim at")
    seen: list[float] = []

    def validate(compiled: Any, _data: Iterable[Any]) -> float:
        seen.append(gate_score(comparison, _Compiled(compiled, original), reference, labels))
        # NNCF subtracts scores; a model that cannot be scored is as far from passing as can be written
        return seen[-1] if math.isfinite(seen[-1]) else -1e30

    data = list(batches())
    try:
        quantized = nncf.quantize_with_accuracy_control(
            ov_model,
            nncf.Dataset(data),
            nncf.Dataset(data[:1]),  # validate() reads the eval data through ``reference``, not this
            validate,
            max_drop=allowed_drop(comparison, own),
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=subset_size,
            advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                max_num_iterations=max_iterations
            ),
            **dict(options or {}),
        )
    except Exception as exc:  # NNCF raises many kinds; the pass reports one
        raise PassError(f"NNCF accuracy control failed: {type(exc).__name__}: {exc}") from exc
    final = _Compiled(ov.Core().compile_model(quantized, "CPU"), original)
    result = comparison.evaluate(final, reference, labels)
    value = result.value(comparison.gate.metric)
    return GatedQuantization(quantized, value, comparison.check(result) is None, len(seen))
