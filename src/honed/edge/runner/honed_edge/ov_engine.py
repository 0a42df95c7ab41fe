"""The model on OpenVINO's CPU plugin (IR ``model.xml`` + ``model.bin``), compiled with the properties the manifest
recorded (``session.options``: the precision hint, performance hint and threads the optimize run measured with),
passed as they are so the device runs what was measured; for each of ``session.static_shapes`` a copy is compiled
with every input fixed at that shape, and inputs of exactly that shape run on it (any other on the model)."""

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


def _static_copies(model: str | Path, settings: Mapping[str, Any]) -> dict[tuple[tuple[int, ...], ...], Any]:
    """Input shapes (in the model's input order) -> the model compiled with its inputs fixed at them."""
    sets = list(settings.get("static_shapes") or [])
    if not sets:
        return {}
    properties = {str(k): v for k, v in dict(settings.get("options") or {}).items()}
    core = ov.Core()
    source = core.read_model(str(model))
    names = [port.get_any_name() for port in source.inputs]
    copies = {}
    for shapes in sets:
        if sorted(shapes) != sorted(names):
            raise RunError(f"session.static_shapes names inputs {sorted(shapes)}; the model's are {sorted(names)}")
        copy = source.clone()
        try:
            copy.reshape({name: ov.PartialShape([int(d) for d in shapes[name]]) for name in names})
            compiled = core.compile_model(copy, "CPU", properties)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise RunError(f"cannot compile the model for static shapes {shapes}: {str(exc).splitlines()[0]}") from exc
        copies[tuple(tuple(int(d) for d in shapes[name]) for name in names)] = compiled
    return copies


class _Compiled:
    """One compiled model, its output ports in the manifest's order, and an infer request per serving thread."""

    def __init__(self, compiled: Any, output_names: list[str]) -> None:
        self.compiled = compiled
        ports = {port.get_any_name(): port for port in compiled.outputs}
        missing = [name for name in output_names if name not in ports]
        if missing:
            raise RunError(f"the compiled model has no output {', '.join(missing)}")
        self.ports = [(name, ports[name]) for name in output_names]
        self.local = threading.local()

    def request(self) -> Any:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        return request


class Engine:
    """One compiled model (plus its static copies) and an infer request per serving thread each (a request runs
    one inference at a time)."""

    def __init__(self, model: Path, settings: Mapping[str, Any], output_names: list[str]) -> None:
        self.compiled = compile_model(model, settings)
        self.model = _Compiled(self.compiled, output_names)
        self.inputs = [port.get_any_name() for port in self.compiled.inputs]
        self.static = {key: _Compiled(c, output_names) for key, c in _static_copies(model, settings).items()}

    def describe(self) -> str:
        """The runtime and what the compiled model reports it runs with (not merely what was asked for)."""
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        name = precision.get_type_name() if hasattr(precision, "get_type_name") else str(precision)
        threads = self.compiled.get_property("INFERENCE_NUM_THREADS")
        static = "".join(
            f", static {','.join(sorted({'x'.join(map(str, shape)) for shape in key}))}" for key in self.static
        )
        return f"openvino {ov.get_version()}, precision {name}, {threads} threads{static}"

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        chosen = self.model
        if self.static:
            key = tuple(tuple(np.shape(feeds[name])) for name in self.inputs if name in feeds)
            chosen = self.static.get(key, chosen)
        try:
            result = chosen.request().infer(dict(feeds))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise RunError(f"the model failed to run: {str(exc).splitlines()[0]}") from exc
        return {name: np.array(result[port], copy=True) for name, port in chosen.ports}
