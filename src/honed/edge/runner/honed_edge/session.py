"""The bundle's model, loaded once on the runtime the manifest names (``session.backend``): ONNX Runtime
(``ort_engine``) or OpenVINO (``ov_engine``). Only that runtime is imported, so a bundle needs only its own."""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError, InputError, RunError

ENGINES = {"onnxruntime": "ort_engine", "openvino": "ov_engine"}

__all__ = ["ENGINES", "Model", "RunError", "backend_of"]


def backend_of(bundle: Bundle) -> str:
    backend = str(bundle.session.get("backend", "onnxruntime"))
    if backend not in ENGINES:
        raise BundleError(f"the manifest names runtime {backend!r}; this runner knows {', '.join(ENGINES)}")
    return backend


class Model:
    """``run`` checks feeds against the manifest (names, dtypes, shapes) before the runtime sees them."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.backend = backend_of(bundle)
        engine = importlib.import_module(f".{ENGINES[self.backend]}", __package__)
        self.output_names = [t.name for t in bundle.outputs]
        started = time.perf_counter()
        self.engine = engine.Engine(bundle.model_path, bundle.session, self.output_names)
        self.load_s = time.perf_counter() - started

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
        result: dict[str, np.ndarray[Any, Any]] = self.engine.run(self.check(feeds))
        return result
