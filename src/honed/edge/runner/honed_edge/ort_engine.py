"""The model on ONNX Runtime (``.onnx`` or ``.ort``), with the session options the manifest recorded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .bundle import InputError, RunError

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


class Engine:
    """One ONNX Runtime session; ``run`` is safe from several threads (ONNX Runtime's own guarantee)."""

    def __init__(self, model: Path, settings: Mapping[str, Any], output_names: list[str]) -> None:
        self.session = open_session(model, settings)
        self.output_names = output_names

    def describe(self) -> str:
        return f"onnxruntime {ort.__version__}"

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        try:
            values = self.session.run(self.output_names, dict(feeds))
        except ort.capi.onnxruntime_pybind11_state.InvalidArgument as exc:
            raise InputError(f"the model refused the inputs: {str(exc).splitlines()[0]}") from exc
        except Exception as exc:  # onnxruntime's Fail/RuntimeException types share no public base
            raise RunError(f"the model failed to run: {str(exc).splitlines()[0]}") from exc
        return dict(zip(self.output_names, values, strict=True))
