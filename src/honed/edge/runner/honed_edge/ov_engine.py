"""The model on OpenVINO's CPU plugin (IR ``model.xml`` + ``model.bin``), compiled with the properties the manifest
recorded (``session.options``: the precision hint, performance hint and threads the optimize run measured with),
passed as they are so the device runs what was measured."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from .bundle import RunError


def compile_model(model: str | Path, settings: Mapping[str, Any]) -> Any:
    properties = {str(k): v for k, v in dict(settings.get("options") or {}).items()}
    return ov.Core().compile_model(str(model), "CPU", properties)


class Engine:
    """One compiled model and an infer request per serving thread (a request runs one inference at a time)."""

    def __init__(self, model: Path, settings: Mapping[str, Any], output_names: list[str]) -> None:
        self.compiled = compile_model(model, settings)
        ports = {port.get_any_name(): port for port in self.compiled.outputs}
        missing = [name for name in output_names if name not in ports]
        if missing:
            raise RunError(f"the compiled model has no output {', '.join(missing)}")
        self.ports = [(name, ports[name]) for name in output_names]
        self.local = threading.local()

    def describe(self) -> str:
        """The runtime and what the compiled model reports it runs with (not merely what was asked for)."""
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        name = precision.get_type_name() if hasattr(precision, "get_type_name") else str(precision)
        threads = self.compiled.get_property("INFERENCE_NUM_THREADS")
        return f"openvino {ov.get_version()}, precision {name}, {threads} threads"

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        try:
            result = request.infer(dict(feeds))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise RunError(f"the model failed to run: {str(exc).splitlines()[0]}") from exc
        return {name: np.array(result[port], copy=True) for name, port in self.ports}
