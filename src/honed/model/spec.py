"""Tensor specifications: the name, element type and shape of a model input or output."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import helper

from honed.errors import InvalidArgument

Dim = int | str | None
"""One dimension: a fixed size, a symbolic name (``"batch"``), or unknown (``None``)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, ONNX element type and shape of one graph input or output."""

    name: str
    elem_type: int
    shape: tuple[Dim, ...] | None

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of this tensor's elements."""
        return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type))

    @property
    def type_name(self) -> str:
        """The ONNX name of the element type, e.g. ``FLOAT`` or ``INT64``."""
        return str(onnx.TensorProto.DataType.Name(self.elem_type))

    @property
    def is_dynamic(self) -> bool:
        """Whether any dimension is symbolic or unknown."""
        return self.shape is None or any(not isinstance(d, int) for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.type_name, "shape": list(self.shape) if self.shape else None}

    @classmethod
    def from_value_info(cls, value_info: onnx.ValueInfoProto) -> TensorSpec:
        tensor_type = value_info.type.tensor_type
        shape: tuple[Dim, ...] | None = None
        if tensor_type.HasField("shape"):
            dims: list[Dim] = []
            for dim in tensor_type.shape.dim:
                if dim.HasField("dim_value"):
                    dims.append(int(dim.dim_value))
                elif dim.HasField("dim_param"):
                    dims.append(dim.dim_param)
                else:
                    dims.append(None)
            shape = tuple(dims)
        return cls(value_info.name, int(tensor_type.elem_type), shape)


class Signature(Protocol):
    """Anything that runs a model and says what it takes and gives: a runtime session, a serving executor."""

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...


def input_mismatch(expected: Iterable[str], given: Iterable[str], given_as: str = "input") -> str | None:
    """What is wrong with the names ``given`` for a model whose inputs are ``expected``
    (``missing input(s) a; unknown array(s) b``), or None when they match."""
    want, have = set(expected), {str(n) for n in given}
    parts = []
    if missing := sorted(want - have):
        parts.append(f"missing input(s) {', '.join(missing)}")
    if extra := sorted(have - want):
        parts.append(f"unknown {given_as}(s) {', '.join(extra)}")
    return "; ".join(parts) or None


def format_shape(shape: tuple[Dim, ...] | None) -> str:
    """``[batch, 3, 224, 224]``-style rendering, ``?`` for unknown dims."""
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def parse_shape_overrides(items: list[str] | tuple[str, ...] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1x3x224x224`` strings (as given to ``--shape``) into ``{name: shape}``."""
    result: dict[str, tuple[int, ...]] = {}
    for item in items or ():
        name, sep, dims = item.partition("=")
        name, dims = name.strip(), dims.strip().lower()
        if not sep or not name or not dims:
            raise InvalidArgument(f"bad --shape {item!r}: write NAME=DIMxDIM..., e.g. input=1x3x224x224")
        try:
            shape = tuple(int(d) for d in dims.replace(",", "x").split("x"))
        except ValueError:
            raise InvalidArgument(
                f"bad --shape {item!r}: dimensions must be whole numbers separated by 'x', e.g. 1x3x224x224"
            ) from None
        if any(d <= 0 for d in shape):
            raise InvalidArgument(f"bad --shape {item!r}: every dimension must be >= 1")
        if name in result:
            raise InvalidArgument(f"--shape given twice for input {name!r}")
        result[name] = shape
    return result


def concrete_shapes(
    inputs: list[TensorSpec],
    overrides: dict[str, tuple[int, ...]] | None = None,
    *,
    batch: int | None = None,
    default_dim: int = 1,
) -> dict[str, tuple[int, ...]]:
    """A fixed shape for every input.

    An override wins; otherwise a symbolic/unknown first dimension becomes ``batch`` (when given) and
    any other symbolic dimension ``default_dim``. Overrides must name real inputs, keep the rank, and
    agree with every fixed dimension; ``batch`` replaces an override's first dimension when given.
    """
    overrides = dict(overrides or {})
    names = {spec.name for spec in inputs}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InvalidArgument(
            f"--shape names unknown input(s) {', '.join(unknown)}; the model's inputs are: {', '.join(sorted(names))}"
        )
    result: dict[str, tuple[int, ...]] = {}
    for spec in inputs:
        if spec.name in overrides:
            shape = overrides[spec.name]
            if spec.shape is not None:
                if len(shape) != len(spec.shape):
                    raise InvalidArgument(
                        f"--shape for {spec.name!r} has {len(shape)} dims but the input has {len(spec.shape)}: "
                        f"{format_shape(spec.shape)}"
                    )
                for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=True)):
                    if isinstance(want, int) and want != got and not (axis == 0 and batch is not None):
                        raise InvalidArgument(
                            f"--shape for {spec.name!r} sets dim {axis} to {got}, but the model fixes it at {want}"
                        )
            if batch is not None and shape:
                shape = (batch, *shape[1:])
            result[spec.name] = shape
            continue
        if spec.shape is None:
            raise InvalidArgument(
                f"input {spec.name!r} has no declared shape; give it with --shape {spec.name}=DIMxDIM..."
            )
        dims: list[int] = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim > 0:
                if axis == 0 and batch is not None and dim != batch:
                    raise InvalidArgument(
                        f"input {spec.name!r} fixes its first dimension at {dim}, so batch size {batch} cannot "
                        f"be used; use --batch {dim} or export the model with a dynamic batch axis"
                    )
                dims.append(dim)
            elif axis == 0 and batch is not None:
                dims.append(batch)
            else:
                dims.append(default_dim)
        result[spec.name] = tuple(dims)
    return result
