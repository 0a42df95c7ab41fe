"""Runtime: how models run. One factory (:func:`create_session`) builds every inference session."""

from honed.runtime.base import Backend, Session
from honed.runtime.config import RuntimeConfig
from honed.runtime.factory import backends, create_session, get_backend, register_backend
from honed.runtime.onnxruntime_backend import pin_current_thread, write_optimized_model

__all__ = [
    "Backend",
    "RuntimeConfig",
    "Session",
    "backends",
    "create_session",
    "get_backend",
    "pin_current_thread",
    "register_backend",
    "write_optimized_model",
]
