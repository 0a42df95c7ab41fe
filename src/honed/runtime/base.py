"""The small interface every inference backend implements.

A :class:`Backend` turns a model file and a :class:`RuntimeConfig` into a :class:`Session`; a session runs
numpy feeds and returns numpy outputs by name. ONNX Runtime is one backend; others (OpenVINO) register
beside it in :mod:`honed.runtime.factory` without any caller changing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from honed.model.spec import TensorSpec
from honed.runtime.config import RuntimeConfig


class Session(Protocol):
    """A loaded model ready to run. Implementations must be safe to call from one thread at a time."""

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    @property
    def config(self) -> RuntimeConfig: ...

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Run once; ``feeds`` maps every input name to an array; returns every output by name."""
        ...

    def end_profiling(self) -> Path | None:
        """Stop profiling and return the trace file, or None when profiling was off or unsupported."""
        ...


class Backend(Protocol):
    """Creates sessions for one runtime library."""

    name: str

    def available(self) -> bool:
        """Whether the library is importable on this machine."""
        ...

    def version(self) -> str | None:
        """The library's version, or None when it is not installed."""
        ...

    def providers(self) -> list[str]:
        """honed provider names (``cpu``, ``cuda``, ``tensorrt``) this backend can use here."""
        ...

    def create(self, model_path: Path, config: RuntimeConfig, *, profile_dir: Path | None = None) -> Session:
        """Build a session; ``profile_dir`` turns on per-op profiling written there."""
        ...
