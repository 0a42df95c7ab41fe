"""Tensors in and out: .npz files and the KServe V2 JSON tensor form (``name``, ``shape``, ``datatype``, ``data``)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
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


def decode_v2(body: Any) -> dict[str, np.ndarray[Any, Any]]:
    """A V2 inference request's ``inputs`` as arrays; every fault raises :class:`InputError` naming the tensor."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InputError('the request must be a JSON object with a non-empty "inputs" list')
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
        if data is None:
            raise InputError(f"input {name!r} has no data")
        try:
            flat = np.asarray(data, dtype=V2_TYPES[datatype]).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"input {name!r}: data is not {datatype}: {exc}") from None
        if flat.size != int(np.prod(shape, dtype=np.int64)):
            raise InputError(f"input {name!r}: {flat.size} values do not fill shape {shape}")
        feeds[name] = flat.reshape(shape)
    return feeds


def encode_v2(outputs: Mapping[str, np.ndarray[Any, Any]]) -> list[dict[str, Any]]:
    encoded = []
    for name, value in outputs.items():
        array = np.asarray(value)
        encoded.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": NUMPY_TO_V2.get(array.dtype.name, "BYTES"),
                "data": array.reshape(-1).tolist(),
            }
        )
    return encoded
