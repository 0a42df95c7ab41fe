"""The session factory: the only entry point that turns a model and a RuntimeConfig into a Session."""

from __future__ import annotations

from pathlib import Path

from honed.errors import BackendUnavailable, InvalidArgument
from honed.model.loader import resolve_model_path
from honed.runtime.base import Backend, Session
from honed.runtime.config import RuntimeConfig
from honed.runtime.onnxruntime_backend import OnnxRuntimeBackend
from honed.runtime.openvino_backend import OpenVinoBackend

_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Add a backend under its name; a second backend with the same name is refused."""
    if backend.name in _BACKENDS:
        raise InvalidArgument(f"a backend named {backend.name!r} is already registered")
    _BACKENDS[backend.name] = backend


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``, loading optional ones on first use."""
    if name not in _BACKENDS:
        raise InvalidArgument(f"unknown backend {name!r}; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]


def backends() -> dict[str, Backend]:
    """Every registered backend by name."""
    return dict(_BACKENDS)


def create_session(
    model: str | Path, config: RuntimeConfig | None = None, *, profile_dir: Path | None = None
) -> Session:
    """Load ``model`` (a file, or a folder holding ``model.onnx``) into a ready-to-run session."""
    config = config or RuntimeConfig()
    backend = get_backend(config.backend)
    if not backend.available():
        raise BackendUnavailable(
            f"backend {config.backend!r} is not installed; install it with: pip install 'honed[{config.backend}]'"
        )
    return backend.create(resolve_model_path(model), config, profile_dir=profile_dir)


register_backend(OnnxRuntimeBackend())
# Always listed; it imports openvino only when a session is built, and available() says whether it can.
register_backend(OpenVinoBackend())
