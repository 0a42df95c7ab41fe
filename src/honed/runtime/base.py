"""The small interface every inference backend implements, and the pieces backends share.

A :class:`Backend` turns a model file and a :class:`RuntimeConfig` into a :class:`Session`; a session runs
numpy feeds and returns numpy outputs by name. A backend also declares what it offers the search: the runtime
settings worth measuring on a machine (:meth:`Backend.runtime_variants`), the lower compute precisions it
can run there (:meth:`Backend.lower_precisions`) and a copy compiled for the measured input shapes
(:meth:`Backend.static_variant`), so the search never asks which backend it is talking to.
ONNX Runtime is one backend; others (OpenVINO) are listed beside it in :mod:`honed.runtime.factory`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from honed.model.spec import Signature, TensorSpec
from honed.runtime.config import RuntimeConfig

if TYPE_CHECKING:
    from honed.hardware import HardwareSpec


class Session(Signature, Protocol):
    """A loaded model ready to run. Implementations must be safe to call from one thread at a time."""

    @property
    def config(self) -> RuntimeConfig: ...

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Run once; ``feeds`` maps every input name to an array; returns every output by name."""
        ...

    def end_profiling(self) -> Path | None:
        """Stop profiling and return the trace file, or None when profiling was off or unsupported."""
        ...


@dataclass(frozen=True)
class PrecisionOffer:
    """The lower compute precisions a backend offers for one machine, as runtime configs to measure.

    ``precisions`` names every lower precision the backend can switch to at all (empty: it offers none through
    runtime settings); ``configs`` the given config at each of them this machine can run, in that order;
    ``reason`` says, when ``configs`` is empty although ``precisions`` is not, why this machine gets none.
    """

    precisions: tuple[str, ...] = ()
    configs: tuple[RuntimeConfig, ...] = ()
    reason: str | None = None


class Backend(Protocol):
    """Creates sessions for one runtime library and says what it offers on a machine."""

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

    def precisions(self, hardware: HardwareSpec | None = None) -> list[str]:
        """Compute precisions it runs here (``f32`` first), limited to ``hardware``'s ISA when given."""
        ...

    def lower_precisions(self, config: RuntimeConfig, hardware: HardwareSpec | None = None) -> PrecisionOffer:
        """``config`` at each lower precision this backend runs on ``hardware`` (or on this machine)."""
        ...

    def static_variant(self, config: RuntimeConfig, shapes: Mapping[str, tuple[int, ...]]) -> RuntimeConfig | None:
        """``config`` that also runs inputs of exactly ``shapes`` on a copy compiled for them, or None when the
        backend has no such setting (or ``config`` has it already)."""
        ...

    def runtime_variants(self, cpus: Sequence[int], *, objective: str = "latency") -> list[RuntimeConfig]:
        """Runtime settings worth measuring on the usable CPU ids ``cpus``; the first is the default."""
        ...

    def create(self, model_path: Path, config: RuntimeConfig, *, profile_dir: Path | None = None) -> Session:
        """Build a session; ``profile_dir`` turns on per-op profiling written there."""
        ...


class SessionBase:
    """What every session holds: its input and output specs and the config it was built from."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], config: RuntimeConfig) -> None:
        self._inputs = inputs
        self._outputs = outputs
        self._config = config

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def config(self) -> RuntimeConfig:
        return self._config


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (runtime libraries write pages), or its type."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
