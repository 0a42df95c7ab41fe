"""honed: make trained ONNX models fast, cheap and safe to run on the hardware you have.

The Python API mirrors the CLI: ``inspect_model`` (``honed inspect``), ``detect_hardware`` (``honed hw``),
``benchmark`` (``honed bench``), and the session factory every part of honed runs models through.
"""

from honed.errors import HonedError
from honed.model import inspect_model
from honed.runtime import RuntimeConfig, create_session

__version__ = "0.1.0"

__all__ = ["HonedError", "RuntimeConfig", "__version__", "create_session", "inspect_model"]
