"""The V2 datatype table: V2 names (``FP32``, ``BYTES`` ...) <-> numpy dtypes <-> ONNX element types.

``BYTES`` tensors are numpy ``object`` arrays of ``bytes``; on the wire (binary extension, gRPC raw contents)
each element is a 4-byte little-endian length followed by that many bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from onnx import TensorProto

from honed.errors import DataError

# name -> (numpy dtype, ONNX element type); numpy dtypes are little-endian as the wire format requires.
_TABLE: dict[str, tuple[np.dtype[Any], int]] = {
    "BOOL": (np.dtype(np.bool_), TensorProto.BOOL),
    "UINT8": (np.dtype("<u1"), TensorProto.UINT8),
    "UINT16": (np.dtype("<u2"), TensorProto.UINT16),
    "UINT32": (np.dtype("<u4"), TensorProto.UINT32),
    "UINT64": (np.dtype("<u8"), TensorProto.UINT64),
    "INT8": (np.dtype("<i1"), TensorProto.INT8),
    "INT16": (np.dtype("<i2"), TensorProto.INT16),
    "INT32": (np.dtype("<i4"), TensorProto.INT32),
    "INT64": (np.dtype("<i8"), TensorProto.INT64),
    "FP16": (np.dtype("<f2"), TensorProto.FLOAT16),
    "FP32": (np.dtype("<f4"), TensorProto.FLOAT),
    "FP64": (np.dtype("<f8"), TensorProto.DOUBLE),
    "BYTES": (np.dtype(object), TensorProto.STRING),
}
_BY_ONNX = {onnx_type: name for name, (_, onnx_type) in _TABLE.items()}
_BY_KIND = {dtype.str: name for name, (dtype, _) in _TABLE.items() if name != "BYTES"}

DATATYPES: tuple[str, ...] = tuple(_TABLE)
"""Every V2 datatype honed speaks."""


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype; an unknown name is a :class:`DataError`."""
    try:
        return _TABLE[datatype][0]
    except (KeyError, TypeError):
        raise DataError(f"unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}") from None


def from_numpy(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype (``object``/``str``/``bytes`` arrays are ``BYTES``)."""
    if dtype.kind in "OSU":
        return "BYTES"
    name = _BY_KIND.get(dtype.newbyteorder("<").str if dtype.byteorder == ">" else dtype.str)
    if name is None:
        raise DataError(f"numpy dtype {dtype} has no V2 datatype")
    return name


def from_onnx(elem_type: int) -> str:
    """The V2 datatype of an ONNX element type; types without one (e.g. BFLOAT16) are a :class:`DataError`."""
    try:
        return _BY_ONNX[elem_type]
    except KeyError:
        name = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() else elem_type
        raise DataError(f"ONNX element type {name} has no V2 datatype, so it cannot be served") from None


def element_size(datatype: str) -> int:
    """Bytes per element of a fixed-size datatype (``BYTES`` has none)."""
    if datatype == "BYTES":
        raise DataError("BYTES elements have no fixed size")
    return numpy_dtype(datatype).itemsize


def to_bytes_element(value: Any) -> bytes:
    """One BYTES element as bytes (``str`` is UTF-8 encoded)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytearray | memoryview | np.bytes_):
        return bytes(value)
    raise DataError(f"a BYTES element must be a string, got {type(value).__name__}")


def serialize_bytes_tensor(array: np.ndarray[Any, Any]) -> bytes:
    """Row-major BYTES elements, each a 4-byte little-endian length and the bytes."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        raw = to_bytes_element(item)
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def deserialize_bytes_tensor(raw: bytes | memoryview, count: int | None = None) -> list[bytes]:
    """The elements of a length-prefixed BYTES buffer; lengths that overrun the buffer are a :class:`DataError`."""
    view = memoryview(raw)
    items: list[bytes] = []
    pos, end = 0, len(view)
    while pos < end:
        if pos + 4 > end:
            raise DataError("BYTES data ends inside an element's 4-byte length prefix")
        (length,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + length > end:
            raise DataError(f"a BYTES element claims {length} bytes but only {end - pos} remain")
        items.append(bytes(view[pos : pos + length]))
        pos += length
    if count is not None and len(items) != count:
        raise DataError(f"BYTES data holds {len(items)} elements but the shape needs {count}")
    return items
