"""The backend registry and the session factory: the only entry point that turns a model and a RuntimeConfig
into a Session.

Backends are listed as data (:class:`BackendSpec`: a name, the class as ``module:Class``, the optional
libraries and ISA it needs); a backend's module is imported the first time the backend is asked for, and the
module itself imports its runtime library only when a session is built, so ``import honed.runtime`` loads no
optional library (openvino). A second backend with a taken name is refused.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from honed.errors import BackendUnavailable, InvalidArgument
from honed.model.loader import resolve_model_path
from honed.runtime.base import Backend, Session
from honed.runtime.config import RuntimeConfig

if TYPE_CHECKING:
    from honed.hardware import HardwareSpec


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend: its name, its class as ``module:Class`` and what it needs.

    ``requires`` lists the importable modules it cannot run without, ``install`` the pip requirement that
    brings them; ``isa`` the ISA extensions it needs (any one; empty: none).
    """

    name: str
    target: str
    requires: tuple[str, ...] = ()
    install: str | None = None
    isa: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        module, _, attr = self.target.partition(":")
        if not module or not attr:
            raise InvalidArgument(f"backend {self.name!r}: target must be 'module:Class', got {self.target!r}")

    def unmet(self, hardware: HardwareSpec | None = None) -> str | None:
        """Why this backend cannot run here (a missing library, or ``hardware`` lacks its ISA), or None."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            hint = f"; install it with: pip install '{self.install}'" if self.install else ""
            return f"backend {self.name!r} is not installed ({', '.join(missing)} missing){hint}"
        if self.isa and hardware is not None and not any(hardware.has(i) for i in self.isa):
            return f"backend {self.name!r} needs one of the ISA extensions {', '.join(self.isa)}"
        return None

    def load(self) -> Backend:
        """Import the backend's module and return an instance of its class."""
        module, _, attr = self.target.partition(":")
        backend: Backend = getattr(importlib.import_module(module), attr)()
        if backend.name != self.name:
            raise InvalidArgument(f"backend {self.name!r}: {self.target} calls itself {backend.name!r}")
        return backend


_BUILTIN = (
    BackendSpec("onnxruntime", "honed.runtime.onnxruntime_backend:OnnxRuntimeBackend", requires=("onnxruntime",)),
    # Always listed; it imports openvino only when a session is built, and available() says whether it can.
    BackendSpec(
        "openvino",
        "honed.runtime.openvino_backend:OpenVinoBackend",
        requires=("openvino",),
        install="honed[openvino]",
    ),
)

_SPECS: dict[str, BackendSpec] = {}
_LOADED: dict[str, Backend] = {}


def register_backend(backend: Backend | BackendSpec) -> None:
    """Add a backend (an instance, or a spec loaded on first use); a second one with a taken name is refused."""
    if backend.name in _SPECS:
        raise InvalidArgument(f"a backend named {backend.name!r} is already registered")
    if isinstance(backend, BackendSpec):
        _SPECS[backend.name] = backend
        return
    cls = type(backend)
    _SPECS[backend.name] = BackendSpec(backend.name, f"{cls.__module__}:{cls.__qualname__}")
    _LOADED[backend.name] = backend


for _spec in _BUILTIN:
    register_backend(_spec)


def backend_specs() -> list[BackendSpec]:
    """Every registered backend's spec, in registration order (no backend module is imported)."""
    return list(_SPECS.values())


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``, its module imported on first use."""
    if name not in _SPECS:
        raise InvalidArgument(f"unknown backend {name!r}; known: {', '.join(sorted(_SPECS))}")
    if name not in _LOADED:
        _LOADED[name] = _SPECS[name].load()
    return _LOADED[name]


def backends() -> dict[str, Backend]:
    """Every registered backend by name."""
    return {name: get_backend(name) for name in _SPECS}


def runtime_for(model: str | Path, config: RuntimeConfig) -> RuntimeConfig:
    """``config`` fitted to the model file: OpenVINO IR (``.xml``) runs on the openvino backend only, so a config
    for another backend becomes the openvino one with the same threads and pinning (its backend-specific options
    dropped); an IR with a GPU provider is refused. Any other model keeps ``config``."""
    if Path(model).suffix.lower() != ".xml" or config.backend == "openvino":
        return config
    if config.provider != "cpu":
        raise InvalidArgument(f"{model} is OpenVINO IR, which runs on the openvino backend on the CPU only")
    return RuntimeConfig(
        backend="openvino",
        intra_op_threads=config.intra_op_threads,
        inter_op_threads=config.inter_op_threads,
        affinity=config.affinity,
    )


def create_session(
    model: str | Path, config: RuntimeConfig | None = None, *, profile_dir: Path | None = None
) -> Session:
    """Load ``model`` (an ONNX file, an OpenVINO IR ``.xml``, or a folder holding ``model.onnx`` or ``model.xml``)
    into a ready-to-run session."""
    config = config or RuntimeConfig()
    backend = get_backend(config.backend)
    if not backend.available():
        raise BackendUnavailable(
            f"backend {config.backend!r} is not installed; install it with: pip install 'honed[{config.backend}]'"
        )
    return backend.create(resolve_model_path(model), config, profile_dir=profile_dir)
