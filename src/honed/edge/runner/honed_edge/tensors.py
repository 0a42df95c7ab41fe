"""Tensors in and out: .npz files and the KServe V2 tensor forms.

JSON tensors carry ``name``, ``shape``, ``datatype`` and ``data``. The binary tensor extension (as Triton and honed
serve speak it): the body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by raw tensors; an
input with ``parameters.binary_data_size`` takes that many little-endian row-major bytes, in the order of
``inputs``; an output goes back raw when its ``parameters.binary_data`` is true, or, when it says nothing, when the
request's ``parameters.binary_data_output`` is.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import InputError

V2_TYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
NUMPY_TO_V2 = {v: k for k, v in V2_TYPES.items()}


def read_npz(source: str | Path | bytes) -> dict[str, np.ndarray[Any, Any]]:
    """Every array of an .npz file (or its bytes); no pickled objects."""
    where = "the request body" if isinstance(source, bytes) else str(source)
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        with np.load(handle, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise InputError(f"input file not found: {where}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read the .npz input {where}: {exc}") from exc


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
    values: dict[str, Any] = {name: np.asarray(a) for name, a in arrays.items()}
    np.savez(Path(path), **values)


def split_body(body: bytes, header_length: int | None) -> tuple[Any, memoryview]:
    """The JSON header (parsed) and the binary bytes that follow it; faults raise :class:`InputError`."""
    if header_length is None:
        header, binary = body, b""
    elif header_length < 0 or header_length > len(body):
        raise InputError(f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes")
    else:
        header, binary = body[:header_length], body[header_length:]
    try:
        return json.loads(header), memoryview(binary)
    except ValueError as exc:
        raise InputError(f"the body is not JSON: {exc}") from None


def decode_v2(body: Any, binary: memoryview | bytes = b"") -> dict[str, np.ndarray[Any, Any]]:
    """A V2 inference request's ``inputs`` as arrays (JSON ``data`` or ``binary_data_size`` bytes of ``binary``);
    every fault raises :class:`InputError` naming the tensor."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InputError('the request must be a JSON object with a non-empty "inputs" list')
    view = memoryview(binary)
    offset = 0
    feeds: dict[str, np.ndarray[Any, Any]] = {}
    for i, item in enumerate(body["inputs"]):
        if not isinstance(item, dict):
            raise InputError(f"inputs[{i}] must be an object with name, shape, datatype and data")
        name, shape, datatype, data = (item.get(k) for k in ("name", "shape", "datatype", "data"))
        if not isinstance(name, str) or not name:
            raise InputError(f"inputs[{i}] needs a name")
        if name in feeds:
            raise InputError(f"input {name!r} is given twice")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise InputError(f"input {name!r}: shape must be a list of whole numbers >= 0")
        if datatype not in V2_TYPES:
            raise InputError(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(V2_TYPES)}")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InputError(f"input {name!r}: parameters must be a JSON object")
        size = params.get("binary_data_size")
        count = int(np.prod(shape, dtype=np.int64))
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InputError(f"input {name!r}: binary_data_size must be a whole number >= 0, got {size!r}")
            if data is not None:
                raise InputError(f"input {name!r} has both data and binary_data_size; give one")
            if offset + size > len(view):
                raise InputError(
                    f"input {name!r} claims binary_data_size {size} but {len(view) - offset} binary bytes remain"
                )
            dtype = np.dtype(V2_TYPES[datatype]).newbyteorder("<")
            if size != count * dtype.itemsize:
                raise InputError(f"input {name!r}: {size} bytes do not hold shape {shape} of {datatype}")
            flat = np.frombuffer(view[offset : offset + size], dtype=dtype).astype(dtype.newbyteorder("="))
            offset += size
        elif data is None:
            raise InputError(f"input {name!r} has neither data nor parameters.binary_data_size")
        else:
            try:
                flat = np.asarray(data, dtype=V2_TYPES[datatype]).reshape(-1)
            except (TypeError, ValueError, OverflowError) as exc:
                raise InputError(f"input {name!r}: data is not {datatype}: {exc}") from None
        if flat.size != count:
            raise InputError(f"input {name!r}: {flat.size} values do not fill shape {shape}")
        feeds[name] = flat.reshape(shape)
    if offset != len(view):
        raise InputError(
            f"the inputs' binary_data_size values add up to {offset} bytes but {len(view)} binary bytes follow "
            "the JSON header"
        )
    return feeds


def binary_outputs(body: Any) -> Callable[[str], bool]:
    """Which outputs go back raw: per-output ``parameters.binary_data``, else the request's ``binary_data_output``."""
    params = body.get("parameters") if isinstance(body, dict) else None
    default = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    per_output: dict[str, bool] = {}
    requested = body.get("outputs") if isinstance(body, dict) else None
    for item in requested if isinstance(requested, list) else []:
        item_params = item.get("parameters") if isinstance(item, dict) else None
        if isinstance(item_params, dict) and "binary_data" in item_params and isinstance(item.get("name"), str):
            per_output[item["name"]] = bool(item_params["binary_data"])
    return lambda name: per_output.get(name, default)


def encode_v2(
    outputs: Mapping[str, np.ndarray[Any, Any]], binary: Callable[[str], bool] = lambda _: False
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The outputs as V2 entries, and the raw bytes of those ``binary`` picks (in order, for after the header)."""
    encoded: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in outputs.items():
        array = np.asarray(value)
        entry: dict[str, Any] = {
            "name": name,
            "shape": list(array.shape),
            "datatype": NUMPY_TO_V2.get(array.dtype.name, "BYTES"),
        }
        if binary(name):
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        encoded.append(entry)
    return encoded, chunks
