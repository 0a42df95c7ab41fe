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

import contextlib
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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
    # judged in f32, as NNCF validates: the precision the rest runs in is the candidate's own, judged later
    final = _Compiled(ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}), original)
    result = comparison.evaluate(final, reference, labels)
    value = result.value(comparison.gate.metric)
    return GatedQuantization(quantized, value, comparison.check(result) is None, len(seen))


@dataclass(frozen=True)
class ControlledScope:
    """What :func:`accuracy_controlled_scope` found: the OpenVINO ops NNCF's accuracy control kept in float
    (names, sorted), whether the gate accepted its model, and how many validations NNCF ran."""

    ignored: tuple[str, ...]
    accepted: bool
    validations: int


def quantized_ops(ov_model: Any) -> set[str]:
    """Names of the ops of ``ov_model`` that read a FakeQuantize output (through a Convert at most)."""
    names = set()
    for op in ov_model.get_ordered_ops():
        for value in op.inputs():
            source = value.get_source_output().get_node()
            if source.get_type_name() == "Convert":
                source = source.input_value(0).get_node()
            if source.get_type_name() == "FakeQuantize" and op.get_type_name() != "FakeQuantize":
                names.add(op.get_friendly_name())
                break
    return names


def accuracy_controlled_scope(
    source: Path,
    full: Path,
    params: Mapping[str, Any],
    calibration: CalibrationSource,
    comparison: Comparison,
    reference: ReferenceOutputs,
    *,
    labels: Array | None = None,
    max_iterations: int = 20,
) -> ControlledScope:
    """Run :func:`quantize_with_gate` on the ONNX model at ``source`` read as an ``openvino.Model``, with the
    ``nncf-int8`` pass's resolved ``params`` (preset, model type, subset size), and name the ops it kept in
    float: those the full ``nncf-int8`` model at ``full`` (IR) quantizes and NNCF's result does not. That list,
    as the pass's ``ignored_scope``, rebuilds an equivalent model through the pass itself (replayable); names
    OpenVINO makes up from a counter are left out (they differ between processes)."""
    from honed.passes.nncf import is_encoder
    from honed.runtime import RuntimeConfig, create_session

    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise PassError("nncf and openvino are needed; install them with: pip install 'honed[openvino]'") from exc
    import onnx

    core = ov.Core()
    try:
        ov_model = core.read_model(str(source))
        full_ops = quantized_ops(core.read_model(str(full)))
    except RuntimeError as exc:
        raise PassError(f"OpenVINO cannot read the model: {str(exc).strip().splitlines()[0]}") from exc
    model_type = params.get("model_type", "detect")
    if model_type == "detect":
        model_type = "transformer" if is_encoder(onnx.load(str(source))) else "default"
    options: dict[str, Any] = {
        "preset": nncf.QuantizationPreset.PERFORMANCE
        if params.get("preset") == "performance"
        else nncf.QuantizationPreset.MIXED,
        "target_device": nncf.TargetDevice.CPU,
    }
    if model_type == "transformer":
        options["model_type"] = nncf.ModelType.TRANSFORMER
    original = create_session(source, RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": "f32"}))
    available = sum(1 for _ in calibration())
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
        found = quantize_with_gate(
            ov_model,
            calibration,
            comparison,
            reference,
            original,
            labels=labels,
            subset_size=max(1, min(int(params.get("subset_size", 300)), available)),
            max_iterations=max_iterations,
            options=options,
        )
    kept = full_ops - quantized_ops(found.model)
    stable = tuple(sorted(name for name in kept if not _COUNTER_NAME.fullmatch(name)))
    return ControlledScope(stable, found.accepted, found.validations)


_COUNTER_NAME = re.compile(r"[A-Za-z]+_\d+")  # OpenVINO's ``<Type>_<n>`` names from a process-wide counter
