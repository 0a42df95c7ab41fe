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


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A V2 ``shape``: a list of whole numbers >= 0."""
    if not isinstance(shape, list | tuple) or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape
    ):
        raise DataError(f"input {name!r}: 'shape' must be a list of whole numbers >= 0, got {shape!r}")
    return tuple(int(d) for d in shape)


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements of a tensor of this shape (1 for a scalar)."""
    return math.prod(shape)
