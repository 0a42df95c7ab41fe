"""The V2 inference request and response, and the server, model and tensor metadata, as plain Python values
shared by every transport.

Codecs (:mod:`.rest` for JSON and the binary extension, :mod:`.grpc_codec` for gRPC) turn wire bytes into these
and back; the dataplane only ever sees these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from honed.errors import DataError

Parameters = dict[str, Any]
"""V2 ``parameters``: string keys to bool, int, float or string values."""


@dataclass
class Tensor:
    """A named tensor: its V2 datatype, shape and values (``data.shape == shape``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]
    parameters: Parameters = field(default_factory=dict)


@dataclass
class RequestedOutput:
    """An output the client asked for, with its per-output ``parameters`` (e.g. ``binary_data``)."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass
class InferRequest:
    """A decoded infer request. ``outputs`` is None when the client asked for every output."""

    inputs: list[Tensor]
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: Parameters = field(default_factory=dict)

    @property
    def timeout_s(self) -> float | None:
        """The V2 ``timeout`` parameter (microseconds, as Triton and tritonclient send it) in seconds."""
        value = self.parameters.get("timeout")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise DataError(f"parameter 'timeout' must be a number of microseconds >= 0, got {value!r}")
        return float(value) / 1e6 if value > 0 else None


@dataclass
class InferResponse:
    """A model's answer to one infer request."""

    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True)
class TensorMetadata:
    """One model input or output as metadata lists it; ``-1`` stands for a dimension of no fixed size."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ServerMetadata:
    """The server metadata answer: the server's name, version and the V2 extensions it speaks."""

    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """The model metadata answer. ``max_batch_size`` is 0 for a model that takes no batch dimension."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    max_batch_size: int


MAX_RANK = 64
"""The most dimensions a tensor may have (ONNX Runtime and numpy take no more)."""

MAX_ELEMENTS = 2**40
"""The most elements a tensor may have when the caller names no smaller limit; far below the 2**63 elements at
which a count of 8-byte elements overflows int64. Servers pass their body limit: every encoding spends at least a
byte per element, so a body of N bytes cannot carry more than N elements."""

_INT64_MAX = 2**63 - 1


def check_shape(name: str, shape: Any, max_elements: int = MAX_ELEMENTS) -> tuple[int, ...]:
    """A V2 ``shape``: at most :data:`MAX_RANK` whole numbers >= 0 whose product is at most ``max_elements``.

    The one shape check of every codec (JSON, binary, gRPC), run before anything is allocated for the tensor.
    Zero dimensions do not excuse the others: ``[0, 2**70]`` is refused, since numpy cannot even describe it.
    """
    if not isinstance(shape, list | tuple) or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape
    ):
        raise DataError(f"input {name!r}: 'shape' must be a list of whole numbers >= 0, got {_show(shape)}")
    if len(shape) > MAX_RANK:
        raise DataError(f"input {name!r}: 'shape' has {len(shape)} dimensions; at most {MAX_RANK} are allowed")
    # The running product of the non-zero dimensions stops as soon as it passes the limit, so a shape of huge
    # numbers costs no big-integer arithmetic.
    size = 1
    for d in shape:
        if d > _INT64_MAX:
            raise DataError(f"input {name!r}: dimension {d} in 'shape' does not fit in 64 bits")
        size *= max(d, 1)
        if size > max_elements:
            raise DataError(
                f"input {name!r}: 'shape' {_show(shape)} asks for more than {max_elements} elements, "
                "more than this server accepts in one request"
            )
    return tuple(int(d) for d in shape)


def _show(shape: Any, most: int = 200) -> str:
    """A shape for an error message, cut short: a 10,000-dimension shape is not echoed back whole."""
    text = repr(list(shape)) if isinstance(shape, list | tuple) else repr(shape)
    return text if len(text) <= most else text[: most - 3] + "..."


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements of a tensor of this shape (1 for a scalar)."""
    return math.prod(shape)
