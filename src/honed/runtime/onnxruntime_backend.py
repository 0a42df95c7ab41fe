"""ONNX Runtime backend: the one place in honed that constructs ``onnxruntime.InferenceSession``."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from honed.errors import BackendError, BackendUnavailable, DataError, InvalidArgument, InvalidModel
from honed.model.spec import TensorSpec
from honed.runtime.base import PrecisionOffer, SessionBase, first_line
from honed.runtime.config import RuntimeConfig, unique_configs

if TYPE_CHECKING:
    from honed.hardware import HardwareSpec

_PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_ORT_TYPES = {
    "tensor(float)": 1,
    "tensor(uint8)": 2,
    "tensor(int8)": 3,
    "tensor(uint16)": 4,
    "tensor(int16)": 5,
    "tensor(int32)": 6,
    "tensor(int64)": 7,
    "tensor(string)": 8,
    "tensor(bool)": 9,
    "tensor(float16)": 10,
    "tensor(double)": 11,
    "tensor(uint32)": 12,
    "tensor(uint64)": 13,
    "tensor(bfloat16)": 16,
}


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape) if arg.shape is not None else None
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, 0), shape)


class OrtSession(SessionBase):
    """An ``onnxruntime.InferenceSession`` behind honed's :class:`~honed.runtime.base.Session` interface."""

    def __init__(self, session: ort.InferenceSession, config: RuntimeConfig) -> None:
        super().__init__([_spec(a) for a in session.get_inputs()], [_spec(a) for a in session.get_outputs()], config)
        self._session = session
        self._output_names = [o.name for o in self._outputs]

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's names of the providers this session actually uses."""
        return list(self._session.get_providers())

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        try:
            values = self._session.run(self._output_names, dict(feeds))
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ValueError, TypeError) as exc:
            raise DataError(f"inputs do not fit the model: {first_line(exc)}") from exc
        except Exception as exc:  # ORT raises its own Fail/RuntimeException types
            raise BackendError(f"onnxruntime failed to run the model: {first_line(exc)}") from exc
        return dict(zip(self._output_names, values, strict=True))

    def end_profiling(self) -> Path | None:
        if not self._session.get_session_options().enable_profiling:
            return None
        return Path(self._session.end_profiling())


class OnnxRuntimeBackend:
    """Sessions on ONNX Runtime with the CPU, CUDA or TensorRT execution provider."""

    name = "onnxruntime"

    def available(self) -> bool:
        return True

    def version(self) -> str | None:
        return str(ort.__version__)

    def providers(self) -> list[str]:
        installed = set(ort.get_available_providers())
        return [name for name, ort_name in _PROVIDER_NAMES.items() if ort_name in installed]

    def precisions(self, hardware: HardwareSpec | None = None) -> list[str]:
        """``f32``: ONNX Runtime's precision is the model file's (the ``fp16`` pass changes it), not a setting."""
        return ["f32"]

    def lower_precisions(self, config: RuntimeConfig, hardware: HardwareSpec | None = None) -> PrecisionOffer:
        """None: lower precisions on ONNX Runtime are passes (``fp16``, the INT8 passes), not runtime settings."""
        return PrecisionOffer()

    def static_variant(self, config: RuntimeConfig, shapes: Mapping[str, tuple[int, ...]]) -> RuntimeConfig | None:
        """None: ONNX Runtime's CPU provider plans one model for every shape; it has no static-shape setting."""
        return None

    def runtime_variants(self, cpus: Sequence[int], *, objective: str = "latency") -> list[RuntimeConfig]:
        """The default session, all cores with and without spinning, pinned to ``cpus``, and one thread."""
        cpus = tuple(cpus) or (0,)
        cores = len(cpus)
        base = RuntimeConfig()
        variants = [
            base,
            base.with_(intra_op_threads=cores),
            base.with_(intra_op_threads=cores, spinning=False),
            base.with_(intra_op_threads=cores, affinity=cpus),
        ]
        if cores > 1:
            variants.append(base.with_(intra_op_threads=1))
        return unique_configs(variants)

    def create(self, model_path: Path, config: RuntimeConfig, *, profile_dir: Path | None = None) -> OrtSession:
        options = self.session_options(config, profile_dir=profile_dir)
        providers = self._providers(config)  # outside the try: a missing provider is not a bad model
        try:
            session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own types for bad graphs and unsupported ops
            raise InvalidModel(f"onnxruntime cannot load {model_path}: {first_line(exc)}") from exc
        return OrtSession(session, config)

    def session_options(self, config: RuntimeConfig, *, profile_dir: Path | None = None) -> ort.SessionOptions:
        """The ``SessionOptions`` a config stands for (also used to write an optimized graph offline)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = _GRAPH_LEVELS[config.graph_optimization]
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = config.inter_op_threads
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if config.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        options.enable_cpu_mem_arena = config.memory_arena
        options.log_severity_level = 3
        spin = "1" if config.spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        if config.affinity and config.threads > 1:
            # ORT pins the threads it creates (threads - 1 of them; the caller's thread runs work too and
            # is pinned by the caller, see pin_current_thread). Its processor ids are 1-based.
            pinned = [config.affinity[i % len(config.affinity)] + 1 for i in range(1, config.threads)]
            options.add_session_config_entry("session.intra_op_thread_affinities", ";".join(map(str, pinned)))
        for key, value in sorted(config.options.items()):
            if key.startswith("session."):  # ONNX Runtime's own session config entries, passed through
                options.add_session_config_entry(key, value)
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            options.enable_profiling = True
            options.profile_file_prefix = str(profile_dir / "ort_profile")
        return options

    def _providers(self, config: RuntimeConfig) -> list[Any]:
        wanted = _PROVIDER_NAMES[config.provider]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(
                f"execution provider {config.provider!r} is not available in this onnxruntime "
                f"({_package_name()}); install onnxruntime-gpu with CUDA/TensorRT libraries, or use --provider cpu"
            )
        if config.provider == "cpu":
            return ["CPUExecutionProvider"]
        device = {"device_id": str(config.device_id)}
        chain: list[Any] = [(wanted, device)]
        if config.provider == "tensorrt":
            chain.append(("CUDAExecutionProvider", device))
        chain.append("CPUExecutionProvider")
        return chain


def write_optimized_model(
    model_path: Path, out_path: Path, level: str = "basic", *, provider: str = "cpu", threads: int = 1
) -> Path:
    """Let ONNX Runtime optimize ``model_path`` offline at ``level`` and write the result to ``out_path``.

    ``level`` is ``basic`` or ``extended`` (``all`` adds layout changes tied to this machine's kernels, which
    do not port to other machines, so it is refused here). ``provider`` decides which fused kernels may be
    used (an ``extended`` graph written for ``cpu`` holds CPU-only contrib ops).
    """
    if level not in ("basic", "extended"):
        raise InvalidArgument(f"offline graph optimization level must be basic or extended, got {level!r}")
    config = RuntimeConfig(provider=provider, graph_optimization=level, intra_op_threads=threads)
    backend = OnnxRuntimeBackend()
    options = backend.session_options(config)
    options.optimized_model_filepath = str(out_path)
    providers = backend._providers(config)
    try:
        ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own types for bad graphs and unsupported ops
        raise InvalidModel(f"onnxruntime cannot optimize {model_path}: {first_line(exc)}") from exc
    return out_path


def pin_current_thread(cores: tuple[int, ...] | None) -> None:
    """Pin the calling thread to ``cores`` (Linux); the thread that calls ``run`` executes work too."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))


def _package_name() -> str:
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "onnxruntime"
