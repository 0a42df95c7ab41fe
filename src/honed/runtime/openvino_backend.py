"""OpenVINO backend: runs an ONNX file (or OpenVINO IR) on the CPU plugin behind honed's Session interface.

``openvino`` is an optional dependency (``pip install 'honed[openvino]'``): it is imported only when a
session is built, so honed works without it. Precision is always explicit: unless the config's options say
otherwise, ``INFERENCE_PRECISION_HINT`` is ``f32``, because OpenVINO silently runs BF16 on CPUs with
AVX512_BF16/AMX, which changes the model's outputs without anyone asking for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from honed.errors import BackendError, BackendUnavailable, DataError, InvalidArgument, InvalidModel
from honed.model.spec import Dim, TensorSpec
from honed.runtime.base import PrecisionOffer, SessionBase, first_line
from honed.runtime.config import RuntimeConfig, unique_configs

if TYPE_CHECKING:
    from honed.hardware import HardwareSpec

_PRECISIONS = ("f32", "bf16", "f16")
_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
_DEFAULT_OPTIONS = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}

# OpenVINO element type names -> ONNX TensorProto element types.
_OV_TYPES = {
    "f32": 1,
    "u8": 2,
    "i8": 3,
    "u16": 4,
    "i16": 5,
    "i32": 6,
    "i64": 7,
    "boolean": 9,
    "f16": 10,
    "f64": 11,
    "u32": 12,
    "u64": 13,
    "bf16": 16,
}


def _openvino() -> Any:
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise BackendUnavailable(
            "backend 'openvino' is not installed; install it with: pip install 'honed[openvino]'"
        ) from exc


def _spec(port: Any) -> TensorSpec:
    names = port.get_names()
    name = port.get_any_name() if names else str(port)
    elem = _OV_TYPES.get(port.get_element_type().get_type_name(), 0)
    pshape = port.get_partial_shape()
    if pshape.rank.is_dynamic:
        return TensorSpec(name, elem, None)
    dims: list[Dim] = [int(d.get_length()) if d.is_static else None for d in pshape]
    return TensorSpec(name, elem, tuple(dims))


def compile_properties(config: RuntimeConfig) -> dict[str, Any]:
    """The OpenVINO CPU properties a config stands for; unknown or bad options are refused."""
    options = {**_DEFAULT_OPTIONS, **{k.upper(): v for k, v in config.options.items()}}
    precision = options["INFERENCE_PRECISION_HINT"].lower()
    if precision not in _PRECISIONS:
        raise InvalidArgument(
            f"INFERENCE_PRECISION_HINT must be one of {', '.join(_PRECISIONS)} for the openvino backend; "
            f"got {options['INFERENCE_PRECISION_HINT']!r}"
        )
    hint = options["PERFORMANCE_HINT"].upper()
    if hint not in _HINTS:
        raise InvalidArgument(
            f"PERFORMANCE_HINT must be one of {', '.join(_HINTS)}; got {options['PERFORMANCE_HINT']!r}"
        )
    properties: dict[str, Any] = dict(options)
    properties["INFERENCE_PRECISION_HINT"] = precision
    properties["PERFORMANCE_HINT"] = hint
    if config.threads:
        properties["INFERENCE_NUM_THREADS"] = config.threads
    properties.setdefault("ENABLE_CPU_PINNING", "YES" if config.affinity else "NO")
    return properties


class OpenVinoSession(SessionBase):
    """An OpenVINO compiled model plus one infer request, behind :class:`~honed.runtime.base.Session`.

    ``static`` maps input shapes (in input order) to infer requests of copies compiled for exactly those shapes
    (the config's ``static_shapes``); a run whose feeds have one of them uses that copy, any other the model as
    it is.
    """

    def __init__(
        self,
        compiled: Any,
        config: RuntimeConfig,
        profile_dir: Path | None,
        static: Mapping[tuple[tuple[int, ...], ...], Any] | None = None,
    ) -> None:
        super().__init__([_spec(p) for p in compiled.inputs], [_spec(p) for p in compiled.outputs], config)
        self._compiled = compiled
        self._run = _Runner(compiled)
        self._static = {shapes: _Runner(c) for shapes, c in (static or {}).items()}
        self._last = self._run
        self._profile_dir = profile_dir
        self._names = [spec.name for spec in self._inputs]

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        names = set(self._names)
        missing = sorted(names - set(feeds))
        extra = sorted(set(feeds) - names)
        if missing or extra:
            raise DataError(
                f"inputs do not fit the model: missing {missing or 'none'}, unexpected {extra or 'none'}; "
                f"the model's inputs are {sorted(names)}"
            )
        runner = self._run
        if self._static:
            shapes = tuple(tuple(np.shape(feeds[name])) for name in self._names)
            runner = self._static.get(shapes, runner)
        self._last = runner
        try:
            result = runner.request.infer(dict(feeds))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise BackendError(f"openvino failed to run the model: {first_line(exc)}") from exc
        return {
            spec.name: np.array(result[port], copy=True)
            for spec, port in zip(self._outputs, runner.outputs, strict=True)
        }

    def end_profiling(self) -> Path | None:
        """Write OpenVINO's per-layer counters as a JSON list of ``{name, op, time_us}``; None when off."""
        if self._profile_dir is None:
            return None
        rows = [
            {"name": info.node_name, "op": info.node_type, "time_us": info.real_time.total_seconds() * 1e6}
            for info in self._last.request.profiling_info
        ]
        self._profile_dir.mkdir(parents=True, exist_ok=True)
        path = self._profile_dir / "openvino_profile.json"
        path.write_text(json.dumps(rows, indent=1))
        return path


class _Runner:
    """One compiled model's infer request and output ports (a static copy's ports are its own)."""

    def __init__(self, compiled: Any) -> None:
        self.request = compiled.create_infer_request()
        self.outputs = list(compiled.outputs)


#: Each lower precision: the name OpenVINO's CPU plugin reports it by in OPTIMIZATION_CAPABILITIES, and the ISA
#: extensions that make it pay (any one suffices). f16 needs AMX-FP16 tiles: with AVX512_FP16 alone (Sapphire
#: Rapids, which has AMX-BF16 but no AMX-FP16), OpenVINO's f16 ran 3.6-3.9x slower than its bf16 on MiniLM and
#: Magika, and an NNCF INT8 MiniLM with the rest of its graph in f16 took 9 s a call at batch 1 (bf16: 4 ms).
LOWER_PRECISIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bf16": ("BF16", ("avx512_bf16", "amx_bf16")),
    "f16": ("FP16", ("amx_fp16",)),
}


def supported_precisions(capabilities: Sequence[str], hardware: HardwareSpec | None = None) -> list[str]:
    """``f32`` and each lower precision the plugin reports in ``capabilities`` (and ``hardware``'s ISA has)."""
    reported = {c.upper() for c in capabilities}
    return [
        "f32",
        *(
            precision
            for precision, (capability, isa) in LOWER_PRECISIONS.items()
            if capability in reported and (hardware is None or any(hardware.has(name) for name in isa))
        ),
    ]


class OpenVinoBackend:
    """Sessions on OpenVINO's CPU plugin, from an ONNX file or an OpenVINO IR (.xml)."""

    name = "openvino"

    def available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def version(self) -> str | None:
        if not self.available():
            return None
        return str(_openvino().get_version())

    def providers(self) -> list[str]:
        return ["cpu"] if self.available() else []

    def precisions(self, hardware: HardwareSpec | None = None) -> list[str]:
        """Precisions the CPU plugin can run here: ``f32`` always, ``bf16``/``f16`` when the CPU has them.

        With ``hardware``, a lower precision is offered only when that machine's ISA has its arithmetic too
        (:func:`supported_precisions`), so a described machine, not only the one this runs on, decides.
        """
        if not self.available():
            return []
        capabilities = [str(c) for c in _openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        return supported_precisions(capabilities, hardware)

    def lower_precisions(self, config: RuntimeConfig, hardware: HardwareSpec | None = None) -> PrecisionOffer:
        """``config`` with ``INFERENCE_PRECISION_HINT`` at each of bf16/f16 the CPU plugin runs on ``hardware``."""
        offered = tuple(LOWER_PRECISIONS)
        if not self.available():
            return PrecisionOffer(
                offered, reason="openvino is not installed; install it with: pip install 'honed[openvino]'"
            )
        lower = [p for p in self.precisions(hardware) if p in LOWER_PRECISIONS]
        configs = tuple(config.with_(options={**config.options, "INFERENCE_PRECISION_HINT": p}) for p in lower)
        names = "/".join(capability for capability, _ in LOWER_PRECISIONS.values())
        return PrecisionOffer(
            offered, configs, None if configs else f"this CPU has no {names} arithmetic OpenVINO can use"
        )

    def static_variant(self, config: RuntimeConfig, shapes: Mapping[str, tuple[int, ...]]) -> RuntimeConfig | None:
        """``config`` that also compiles a copy of the model for exactly ``shapes`` (see ``static_shapes``)."""
        wanted = {name: tuple(shape) for name, shape in shapes.items()}
        if wanted in config.static_shapes:
            return None
        return config.with_(static_shapes=(*config.static_shapes, wanted))

    def runtime_variants(self, cpus: Sequence[int], *, objective: str = "latency") -> list[RuntimeConfig]:
        """Explicit f32 with the objective's performance hint: the plugin's threads, all cores, one thread."""
        cores = len(tuple(cpus) or (0,))
        hint = "THROUGHPUT" if objective == "throughput" else "LATENCY"
        base = RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint})
        variants = [base, base.with_(intra_op_threads=cores)]
        if cores > 1:
            variants.append(base.with_(intra_op_threads=1))
        return unique_configs(variants)

    def create(self, model_path: Path, config: RuntimeConfig, *, profile_dir: Path | None = None) -> OpenVinoSession:
        if config.provider != "cpu":
            raise InvalidArgument("the openvino backend runs on provider 'cpu' only in honed")
        ov = _openvino()
        properties = compile_properties(config)
        if profile_dir is not None:
            properties["PERF_COUNT"] = True
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except RuntimeError as exc:
            raise InvalidModel(f"openvino cannot read {model_path}: {first_line(exc)}") from exc
        try:
            compiled = core.compile_model(model, "CPU", properties)
            static = {
                _shape_key(model, shapes, model_path): core.compile_model(
                    _reshaped(ov, model, shapes, model_path), "CPU", properties
                )
                for shapes in config.static_shapes
            }
        except RuntimeError as exc:
            raise InvalidModel(f"openvino cannot compile {model_path} for CPU: {first_line(exc)}") from exc
        return OpenVinoSession(compiled, config, profile_dir, static)


def _input_names(model: Any) -> list[str]:
    return [port.get_any_name() for port in model.inputs]


def _shape_key(model: Any, shapes: Mapping[str, tuple[int, ...]], model_path: Path) -> tuple[tuple[int, ...], ...]:
    """``shapes`` in the model's input order, once they are checked against its inputs."""
    names = _input_names(model)
    if set(shapes) != set(names):
        raise InvalidArgument(
            f"static_shapes {dict(shapes)} must give a shape for each input of {model_path} and no other; "
            f"its inputs are {names}"
        )
    for port in model.inputs:
        name, shape = port.get_any_name(), shapes[port.get_any_name()]
        if not port.get_partial_shape().compatible(_openvino().PartialShape(list(shape))):
            raise InvalidArgument(
                f"static_shapes gives input {name!r} of {model_path} the shape {list(shape)}, which its shape "
                f"{port.get_partial_shape()} does not allow"
            )
    return tuple(tuple(shapes[name]) for name in names)


def _reshaped(ov: Any, model: Any, shapes: Mapping[str, tuple[int, ...]], model_path: Path) -> Any:
    """A copy of ``model`` with every input fixed at its shape in ``shapes``."""
    copy = model.clone()
    try:
        copy.reshape({name: ov.PartialShape(list(shape)) for name, shape in shapes.items()})
    except RuntimeError as exc:
        raise InvalidModel(
            f"openvino cannot fix the input shapes of {model_path} at {dict(shapes)}: {first_line(exc)}"
        ) from exc
    return copy
