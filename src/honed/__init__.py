"""honed: make trained ONNX models fast, cheap and safe to run on the hardware you have.

The Python API mirrors the CLI: ``inspect_model`` (``honed inspect``), ``detect_hardware`` (``honed hw``),
``benchmark`` (``honed bench``), ``optimize`` (``honed optimize``), and the session factory every part
of honed runs models through.
"""

from honed.errors import HonedError
from honed.runtime import RuntimeConfig, create_session
from honed.search import OptimizeResult, optimize

__version__ = "0.1.0"

__all__ = ["HonedError", "OptimizeResult", "RuntimeConfig", "__version__", "create_session", "optimize"]
