"""The one ONNX Runtime session of a bundle, built from the options the manifest recorded."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .bundle import Bundle, InputError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(settings: Mapping[str, Any]) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS.get(str(settings.get("graph_optimization", "all")), LEVELS["all"])
    options.intra_op_num_threads = int(settings.get("intra_op_threads", 0))
    options.inter_op_num_threads = int(settings.get("inter_op_threads", 0))
    parallel = settings.get("execution_mode") == "parallel"
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = bool(settings.get("memory_arena", True))
    if not settings.get("spinning", True):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(model: str | Path, settings: Mapping[str, Any]) -> ort.InferenceSession:
    """A session for ``model`` (``.onnx`` or ``.ort``) with the recorded provider, falling back to CPU."""
    wanted = PROVIDERS.get(str(settings.get("provider", "cpu")), PROVIDERS["cpu"])
    available = ort.get_available_providers()
    providers = [wanted, PROVIDERS["cpu"]] if wanted in available and wanted != PROVIDERS["cpu"] else [PROVIDERS["cpu"]]
    return ort.InferenceSession(str(model), sess_options=session_options(settings), providers=providers)


class RunError(Exception):
    """The inputs fit, but ONNX Runtime failed while running the model."""


class Model:
    """The bundle's model, loaded once; ``run`` checks feeds against the manifest before ONNX Runtime sees them."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        started = time.perf_counter()
        self.session = open_session(bundle.model_path, bundle.session)
        self.load_s = time.perf_counter() - started
        self.output_names = [t.name for t in bundle.outputs]

    def check(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        expected = {t.name: t for t in self.bundle.inputs}
        missing = sorted(set(expected) - set(feeds))
        unknown = sorted(set(feeds) - set(expected))
        if missing or unknown:
            parts = [
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "",
            ]
            raise InputError(
                f"inputs do not match the model ({'; '.join(p for p in parts if p)}); it takes {', '.join(expected)}"
            )
        checked = {}
        for name, spec in expected.items():
            value = np.asarray(feeds[name])
            if value.dtype != np.dtype(spec.dtype):
                raise InputError(f"input {name!r} must be {spec.dtype}, got {value.dtype}")
            if len(value.shape) != len(spec.shape) or any(
                want is not None and want != got for want, got in zip(spec.shape, value.shape, strict=True)
            ):
                shown = "x".join("?" if d is None else str(d) for d in spec.shape)
                raise InputError(f"input {name!r} must have shape {shown}, got {'x'.join(map(str, value.shape))}")
            checked[name] = value
        return checked

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        checked = self.check(feeds)
        try:
            values = self.session.run(self.output_names, checked)
        except ort.capi.onnxruntime_pybind11_state.InvalidArgument as exc:
            raise InputError(f"the model refused the inputs: {str(exc).splitlines()[0]}") from exc
        except Exception as exc:  # onnxruntime's Fail/RuntimeException types share no public base
            raise RunError(f"the model failed to run: {str(exc).splitlines()[0]}") from exc
        return dict(zip(self.output_names, values, strict=True))
