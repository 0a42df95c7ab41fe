"""Runtime: how models run. One factory (:func:`create_session`) builds every inference session.

Backends are registered as data in :mod:`honed.runtime.factory` and imported on first use;
:mod:`honed.runtime.checks` is the contract battery every available backend passes.
"""

from honed.runtime.base import Backend, PrecisionOffer, Session
from honed.runtime.config import RuntimeConfig
from honed.runtime.factory import (
    BackendSpec,
    backend_specs,
    backends,
    create_session,
    get_backend,
    register_backend,
    runtime_for,
)
from honed.runtime.onnxruntime_backend import pin_current_thread, write_optimized_model

__all__ = [
    "Backend",
    "BackendSpec",
    "PrecisionOffer",
    "RuntimeConfig",
    "Session",
    "backend_specs",
    "backends",
    "create_session",
    "get_backend",
    "pin_current_thread",
    "register_backend",
    "runtime_for",
    "write_optimized_model",
]
