"""honed: make trained ONNX models fast, cheap and safe to run on the hardware you have.

The Python API mirrors the CLI: ``inspect_model`` (``honed inspect``), ``detect_hardware`` (``honed hw``),
``run_bench`` (``honed bench``), ``optimize`` (``honed optimize``), and the session factory every part
of honed runs models through.
"""

from honed.bench import BenchSettings, run_bench
from honed.errors import HonedError
from honed.hardware import HardwareSpec, detect_hardware
from honed.model import inspect_model
from honed.runtime import RuntimeConfig, create_session
from honed.search import OptimizeResult, optimize

__version__ = "0.1.0"

__all__ = [
    "BenchSettings",
    "HardwareSpec",
    "HonedError",
    "OptimizeResult",
    "RuntimeConfig",
    "__version__",
    "create_session",
    "detect_hardware",
    "inspect_model",
    "optimize",
    "run_bench",
]
