"""honed: make trained ONNX models fast, cheap and safe to run on the hardware you have.

The Python API mirrors the CLI: ``from_torch``, ``from_hf`` and ``from_sklearn`` (``honed import``),
``inspect_model`` (``honed inspect``), ``detect_hardware`` (``honed hw``),
``run_bench`` (``honed bench``), ``optimize`` (``honed optimize``), ``run_server`` with ``ServeOptions``
(``honed serve``), and the session factory every part of honed runs models through.
Names are imported on first use, so ``import honed.registry`` does not load ONNX Runtime.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

try:  # pyproject.toml states the version once; the installed metadata carries it here
    __version__ = importlib.metadata.version("honed")
except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "BenchSettings": "honed.bench",
    "HardwareSpec": "honed.hardware",
    "HonedError": "honed.errors",
    "ImportResult": "honed.intake",
    "Tolerance": "honed.intake",
    "from_hf": "honed.intake",
    "from_sklearn": "honed.intake",
    "from_torch": "honed.intake",
    "RuntimeConfig": "honed.runtime",
    "create_session": "honed.runtime",
    "detect_hardware": "honed.hardware",
    "inspect_model": "honed.model",
    "OptimizeResult": "honed.search",
    "optimize": "honed.search",
    "run_bench": "honed.bench",
    "ServeOptions": "honed.serve.launch",
    "run_server": "honed.serve.launch",
}

__all__ = [
    "BenchSettings",
    "HardwareSpec",
    "HonedError",
    "ImportResult",
    "OptimizeResult",
    "RuntimeConfig",
    "ServeOptions",
    "Tolerance",
    "__version__",
    "create_session",
    "detect_hardware",
    "from_hf",
    "from_sklearn",
    "from_torch",
    "inspect_model",
    "optimize",
    "run_bench",
    "run_server",
]

if TYPE_CHECKING:
    from honed.bench import BenchSettings, run_bench
    from honed.errors import HonedError
    from honed.hardware import HardwareSpec, detect_hardware
    from honed.intake import ImportResult, Tolerance, from_hf, from_sklearn, from_torch
    from honed.model import inspect_model
    from honed.runtime import RuntimeConfig, create_session
    from honed.search import OptimizeResult, optimize
    from honed.serve.launch import ServeOptions, run_server


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'honed' has no attribute {name!r}")
