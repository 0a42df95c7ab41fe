"""The pass contract: :class:`Param`, :class:`PassContext` and the :class:`Pass` base class.

A pass takes an ONNX model and returns a new one; it never mutates its input. Each pass declares its
parameters as data (:class:`Param`), so a recipe can store them, the CLI can list them and the search can
enumerate them (:meth:`Pass.search_space`). Passes are listed in :mod:`honed.passes.registry`, which also
declares what each needs (optional libraries, ISA, calibration data). Heavy optional libraries (onnxslim,
onnxruntime.transformers, nncf, ...) are imported inside :meth:`Pass.apply` only.

Flow of one application::

    params = p.resolve(user_params, ctx)      # validate, fill defaults, settle "auto" values from the ISA
    reason = p.skip_reason(ctx, params, model) # None, or why this pass cannot help on this target/model
    new_model = p.run(model, params, ctx)      # a new ModelProto; PassError when the model is out of reach

Every pass is deterministic: the same input model and resolved parameters give a byte-identical output.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import onnx

from honed.errors import HonedError, InvalidArgument
from honed.model.loader import check_model, load_model, save_model

AUTO = "auto"
"""A parameter value meaning "choose for this target": :meth:`Pass.resolve` replaces it with a concrete value."""

_PARAM_TYPES: tuple[type, ...] = (bool, int, float, str, tuple)

CalibrationSource = Callable[[], Iterator[dict[str, np.ndarray[Any, Any]]]]
"""Each call returns a fresh iterator over input batches (name -> array), streamed, never all in memory."""


class PassError(HonedError):
    """A pass cannot handle this model (an unsupported op, opset or graph shape).

    The search records the message as the reason the pass was skipped and goes on with the others.
    """


class HardwareLike(Protocol):
    """What passes read from the machine description (:class:`honed.hardware.HardwareSpec` satisfies it).

    ``isa`` holds honed's ISA names, e.g. ``avx2``, ``avx512f``, ``avx512_vnni``, ``avx_vnni``, ``amx_int8``,
    ``avx512_bf16``, ``neon_dotprod``.
    """

    @property
    def isa(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Param:
    """One typed, described parameter of a pass.

    ``type`` is one of ``bool``, ``int``, ``float``, ``str`` or ``tuple`` (a tuple of strings; JSON lists
    are accepted). ``choices`` limits the allowed values (for ``tuple``, each item). ``min``/``max`` bound
    numeric values, inclusive. ``auto`` allows the value :data:`AUTO`, which :meth:`Pass.resolve` replaces
    by the pass's choice for the target (e.g. per-channel from the ISA); ``default`` may then be ``"auto"``.
    """

    name: str
    type: type
    default: Any
    description: str
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    auto: bool = False

    def __post_init__(self) -> None:
        if self.type not in _PARAM_TYPES:
            raise TypeError(f"Param {self.name!r}: type must be one of bool, int, float, str, tuple")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        # a broken default is a programming error in the pass itself, caught at import time
        object.__setattr__(self, "default", self.validate(self.default))

    def validate(self, value: Any) -> Any:
        """Return ``value`` as this parameter's type, or raise :class:`InvalidArgument` saying what is allowed."""
        if self.auto and value == AUTO:
            return AUTO
        where = f"parameter {self.name!r}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise InvalidArgument(f"{where} must be true or false, got {value!r}")
            out: Any = value
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{where} must be a whole number, got {value!r}")
            out = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidArgument(f"{where} must be a finite number, got {value!r}")
            out = float(value)
        elif self.type is str:
            if not isinstance(value, str):
                raise InvalidArgument(f"{where} must be a string, got {value!r}")
            out = value
        else:
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise InvalidArgument(f"{where} must be a list of strings, got {value!r}")
            if any(not isinstance(v, str) for v in value):
                raise InvalidArgument(f"{where} must be a list of strings, got {value!r}")
            out = tuple(value)
        if self.choices is not None:
            items = out if self.type is tuple else (out,)
            bad = [v for v in items if v not in self.choices]
            if bad:
                allowed = ", ".join(map(str, self.choices)) + (f", {AUTO}" if self.auto else "")
                raise InvalidArgument(f"{where} does not allow {bad[0]!r}; choose from: {allowed}")
        if self.min is not None and out < self.min:
            raise InvalidArgument(f"{where} must be >= {self.min}, got {out!r}")
        if self.max is not None and out > self.max:
            raise InvalidArgument(f"{where} must be <= {self.max}, got {out!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (for ``--help`` listings, reports and docs)."""
        return {
            "name": self.name,
            "type": self.type.__name__ if self.type is not tuple else "list[str]",
            "default": list(self.default) if isinstance(self.default, tuple) else self.default,
            "description": self.description,
            "choices": list(self.choices) if self.choices is not None else None,
            "min": self.min,
            "max": self.max,
            "auto": self.auto,
        }


@dataclass(frozen=True)
class PassContext:
    """Where a pass's output will run and what it may use.

    ``hardware`` is the machine description (a :class:`honed.hardware.HardwareSpec`, or anything with an
    ``isa`` tuple), or None when unknown: passes then choose portable defaults. ``target_backend`` and
    ``target_provider`` use :class:`honed.runtime.RuntimeConfig`'s names (``onnxruntime``/``openvino``;
    ``cpu``/``cuda``/``tensorrt``). ``calibration`` returns a fresh iterator over input batches at each
    call (None when the user gave no data). ``work_dir`` is a folder a pass may write scratch files to.
    """

    target_backend: str = "onnxruntime"
    target_provider: str = "cpu"
    hardware: HardwareLike | None = None
    calibration: CalibrationSource | None = None
    work_dir: Path | None = None
    seed: int = 0

    @property
    def target(self) -> str:
        """``backend/provider``, e.g. ``onnxruntime/cpu``, as listed in :attr:`Pass.targets`."""
        return f"{self.target_backend}/{self.target_provider}"

    @property
    def isa(self) -> tuple[str, ...]:
        """The ISA names of the hardware, or ``()`` when unknown."""
        return tuple(self.hardware.isa) if self.hardware is not None else ()

    def has_isa(self, *names: str) -> bool:
        """True when any of ``names`` is in the ISA."""
        return any(n in self.isa for n in names)


class Pass:
    """Base of every pass. Subclasses set the class attributes and implement :meth:`apply`.

    ``targets`` lists the ``backend/provider`` pairs the pass can speed up or shrink for (e.g.
    ``("onnxruntime/cpu", "onnxruntime/cuda")``); the default :meth:`skip_reason` skips the others.
    ``tolerance`` is the largest relative output error (``||out - ref|| / ||ref||``) the pass may cause on the
    contract battery's tiny graphs (:mod:`honed.passes.checks`); None for a pass that changes the model's
    function by design (pruning), whose accuracy only the caller's gate can judge.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    targets: ClassVar[tuple[str, ...]] = ("onnxruntime/cpu", "onnxruntime/cuda", "onnxruntime/tensorrt")
    needs_calibration: ClassVar[bool] = False
    quantizes: ClassVar[bool] = False
    """Whether the pass lowers the precision of weights or activations (INT8, FP16): such a pass is not tried on a
    model that is already quantized (:func:`honed.model.quantized.detect_quantization`)."""
    tolerance: ClassVar[float | None] = 1e-4
    tolerance_without_vnni: ClassVar[float | None] = None
    """A quantizing pass's larger bound where the CPU has no VNNI (AVX2 sums u8 x s8 products in saturating 16-bit
    pairs, so the same INT8 model computes less exactly there); None: ``tolerance`` on every CPU."""
    artifact: ClassVar[str] = "onnx"
    """What the pass writes: ``onnx`` (a ModelProto, from :meth:`run`), or ``openvino-ir`` (an ``.xml`` + ``.bin``
    OpenVINO IR, from :meth:`export` only, so the pass ends a pipeline)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a pass that declares a parameter twice is a programming error, caught when it is defined
        names = [p.name for p in cls.params]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"pass {cls.__dict__.get('name', cls.__qualname__)!r} declares a parameter twice")

    # -- parameters -------------------------------------------------------------------------------------

    def validate_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check ``params`` and fill in defaults; unknown names and bad values raise :class:`InvalidArgument`.

        The result is ordered as :attr:`params` and may still hold :data:`AUTO` values.
        """
        given = dict(params or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise InvalidArgument(f"pass {self.name!r} has no parameter {unknown[0]!r}; its parameters: {allowed}")
        return {p.name: p.validate(given[p.name]) if p.name in given else p.default for p in self.params}

    def resolve(self, params: Mapping[str, Any] | None, ctx: PassContext) -> dict[str, Any]:
        """Validated parameters with every :data:`AUTO` value replaced by this pass's choice for ``ctx``.

        The result is what a recipe stores: applying it again needs no context to give the same model.
        """
        values = self.validate_params(params)
        autos = {k for k, v in values.items() if v == AUTO}
        if autos:
            chosen = self.choose_auto(values, ctx)
            for key in autos:
                values[key] = next(p for p in self.params if p.name == key).validate(chosen[key])
        return values

    def choose_auto(self, params: dict[str, Any], ctx: PassContext) -> dict[str, Any]:
        """Concrete values for the parameters left at :data:`AUTO`; passes with ``auto`` params override this."""
        raise NotImplementedError(f"pass {self.name!r} declares auto parameters but does not choose them")

    def tolerance_on(self, ctx: PassContext) -> float | None:
        """The bound on the relative output error this pass may cause on ``ctx``'s CPU (see ``tolerance``)."""
        from honed.passes._quant import has_vnni

        if self.tolerance_without_vnni is not None and not has_vnni(ctx):
            return self.tolerance_without_vnni
        return self.tolerance

    # -- what to try and when not to ----------------------------------------------------------------------

    def skip_reason(
        self, ctx: PassContext, params: Mapping[str, Any] | None = None, model: onnx.ModelProto | None = None
    ) -> str | None:
        """Why this pass cannot help on ``ctx``'s target or on ``model`` (a sentence for the report), or None.

        The default refuses targets not listed in :attr:`targets`, then what the pass's registry spec needs
        and ``ctx`` lacks (an optional library, an ISA extension, calibration data), then the pass's own checks
        (:meth:`skip_for`). A pass that :attr:`quantizes` leaves a model that is already quantized alone: its
        scales and zero points came from training or an earlier calibration.
        """
        from honed.model.quantized import detect_quantization
        from honed.passes.registry import spec_for

        if ctx.target not in self.targets:
            return f"{self.name} does not help on {ctx.target} (it targets {', '.join(self.targets)})"
        if self.quantizes and model is not None:
            info = detect_quantization(model)
            if info is not None:
                return info.reason()
        reason = spec_for(type(self)).unmet(ctx) or self.skip_for(ctx, params, model)
        if reason is None and model is not None:
            return self.unfit(model, self.validate_params(params))
        return reason

    def skip_for(self, ctx: PassContext, params: Mapping[str, Any] | None, model: onnx.ModelProto | None) -> str | None:
        """The pass's own reason not to run, once the target and the requirements are met (e.g. nothing to
        quantize in ``model``, when given); None by default."""
        return None

    def unfit(self, model: onnx.ModelProto, params: Mapping[str, Any]) -> str | None:
        """Why ``model`` gives the pass nothing to do with ``params`` (e.g. no weights of the kind it converts), or
        None: the skip reason when the search asks first, the :class:`PassError` when the pass is run anyway."""
        return None

    def search_space(self, ctx: PassContext) -> list[dict[str, Any]]:
        """Parameter settings worth trying on ``ctx``'s target, most promising first (resolved values)."""
        return [self.resolve({}, ctx)]

    # -- running ------------------------------------------------------------------------------------------

    def run(self, model: onnx.ModelProto | Path, params: Mapping[str, Any] | None, ctx: PassContext) -> onnx.ModelProto:
        """Apply the pass and return a new, checked model; the input model is left untouched.

        Raises :class:`InvalidArgument` for bad parameters and :class:`PassError` when the pass cannot handle
        this model.
        """
        if self.artifact != "onnx":
            raise PassError(f"{self.name} writes {self.artifact}, not ONNX: it ends a pipeline (see Pass.export)")
        resolved = self.resolve(params, ctx)
        source = load_model(model) if isinstance(model, Path) else copy.deepcopy(model)
        unfit = self.unfit(source, resolved)
        if unfit is not None:
            raise PassError(unfit)
        out = self.apply(source, resolved, ctx)
        try:
            check_model(out, f"the output of pass {self.name!r}")
        except HonedError as exc:
            raise PassError(str(exc)) from exc
        return out

    def export(
        self, model: onnx.ModelProto | Path, params: Mapping[str, Any] | None, ctx: PassContext, path: Path
    ) -> Path:
        """Apply the pass and write its artifact at ``path``; returns the file written (for ``openvino-ir``,
        ``path`` with the suffix ``.xml``, its weights in the ``.bin`` beside it). The input is left untouched."""
        return save_model(self.run(model, params, ctx), path)

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        """Do the work on ``model`` (a private copy the pass may change) with resolved ``params``."""
        raise NotImplementedError

    # -- description --------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description of the pass and its parameters."""
        return {
            "name": self.name,
            "description": self.description,
            "targets": list(self.targets),
            "needs_calibration": self.needs_calibration,
            "tolerance": self.tolerance,
            "params": [p.to_dict() for p in self.params],
        }

    def __repr__(self) -> str:
        return f"<pass {self.name}>"
