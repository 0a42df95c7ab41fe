"""V2 REST bodies: the JSON tensor codec and the binary tensor extension.

A request body is JSON, optionally followed by raw tensor bytes; ``Inference-Header-Content-Length`` says
where the JSON ends. Each binary input names its byte count in ``parameters.binary_data_size`` and the inputs'
bytes follow in input order; the counts must add up to exactly the bytes present. Outputs come back as JSON
``data`` unless ``binary_data`` (per output) or ``binary_data_output`` (request level) asks for raw bytes.
JSON ``data`` may be nested or flat, always row-major; its element count must match ``shape``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from honed.errors import DataError
from honed.serve.protocol.datatypes import (
    deserialize_bytes_tensor,
    numpy_dtype,
    serialize_bytes_tensor,
    to_bytes_element,
)
from honed.serve.protocol.types import (
    MAX_ELEMENTS,
    InferRequest,
    InferResponse,
    ModelMetadata,
    Parameters,
    RequestedOutput,
    ServerMetadata,
    Tensor,
    TensorMetadata,
    check_shape,
    element_count,
)

HEADER_LENGTH = "inference-header-content-length"
"""The binary extension's header (lower case, as ASGI gives header names)."""

_ACCEPTS = {
    "b": "b",
    "u": "ui",
    "i": "ui",
    "f": "uif",
}


def parse_json(raw: bytes | str, what: str = "request body") -> Any:
    """Parse JSON, turning any syntax error into a :class:`DataError` that says where."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON: {exc}") from None


def dump_json(doc: Any) -> bytes:
    """Compact JSON; numpy arrays in ``doc`` are written directly (NaN and infinities become null)."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_request(body: bytes, header_length: int | None = None, *, max_elements: int = MAX_ELEMENTS) -> InferRequest:
    """Decode a V2 REST infer request (JSON, or JSON + binary tensors when ``header_length`` is given); no input
    may have more than ``max_elements`` elements."""
    if header_length is None:
        header, binary = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise DataError(
                f"Inference-Header-Content-Length is {header_length} but the body has only {len(body)} bytes"
            )
        header, binary = body[:header_length], body[header_length:]
    doc = parse_json(header)
    if not isinstance(doc, dict):
        raise DataError("the infer request must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise DataError("the infer request needs a non-empty 'inputs' list")
    view = memoryview(binary)
    offset = 0
    inputs: list[Tensor] = []
    seen: set[str] = set()
    for item in raw_inputs:
        tensor, used = _decode_input(item, view, offset, max_elements)
        if tensor.name in seen:
            raise DataError(f"input {tensor.name!r} is given twice")
        seen.add(tensor.name)
        inputs.append(tensor)
        offset += used
    if offset != len(view):
        raise DataError(
            f"the inputs' binary_data_size values add up to {offset} bytes but {len(view)} binary bytes follow the "
            "JSON header; check Inference-Header-Content-Length and each binary_data_size"
        )
    return InferRequest(
        inputs=inputs,
        id=_request_id(doc.get("id")),
        outputs=_decode_outputs(doc.get("outputs")),
        parameters=_parameters(doc.get("parameters"), "request"),
    )


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"'id' must be a string, got {value!r}")
    return value


def _parameters(value: Any, where: str) -> Parameters:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"{where} 'parameters' must be a JSON object, got {value!r}")
    return value


def _decode_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise DataError("'outputs' must be a list of {'name': ...} objects")
    outputs: list[RequestedOutput] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DataError("each entry of 'outputs' must be an object with a string 'name'")
        params = _parameters(item.get("parameters"), f"output {item['name']!r}")
        if "classification" in params:
            raise DataError("the classification extension is not supported; ask for the raw output")
        outputs.append(RequestedOutput(item["name"], params))
    return outputs


def _decode_input(item: Any, binary: memoryview, offset: int, max_elements: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise DataError("each entry of 'inputs' must be an object with name, shape, datatype and data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise DataError("every input needs a string 'name'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise DataError(f"input {name!r} needs a string 'datatype' such as FP32")
    dtype = numpy_dtype(datatype)
    shape = check_shape(name, item.get("shape"), max_elements)
    count = element_count(shape)
    params = _parameters(item.get("parameters"), f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise DataError(f"input {name!r}: binary_data_size must be a whole number >= 0, got {size!r}")
        if "data" in item:
            raise DataError(f"input {name!r} has both 'data' and binary_data_size; give one")
        if offset + size > len(binary):
            raise DataError(
                f"input {name!r} claims binary_data_size {size} but only {len(binary) - offset} binary bytes remain"
            )
        chunk = binary[offset : offset + size]
        array = raw_to_array(name, datatype, dtype, shape, chunk)
        params = {k: v for k, v in params.items() if k != "binary_data_size"}
        return Tensor(name, datatype, shape, array, params), size
    if "data" not in item:
        raise DataError(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    array = json_to_array(name, datatype, dtype, shape, count, item["data"])
    return Tensor(name, datatype, shape, array, params), 0


def raw_to_array(
    name: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], raw: bytes | memoryview
) -> np.ndarray[Any, Any]:
    """Raw little-endian bytes (or length-prefixed BYTES) of one tensor as an array of ``shape``."""
    count = element_count(shape)
    if datatype == "BYTES":
        items = deserialize_bytes_tensor(raw)
        if len(items) != count:
            raise DataError(
                f"input {name!r}: BYTES data holds {len(items)} elements but shape {list(shape)} needs {count}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    want = count * dtype.itemsize
    if len(raw) != want:
        raise DataError(
            f"input {name!r}: {len(raw)} bytes of {datatype} data, but shape {list(shape)} needs {want} bytes"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def json_to_array(
    name: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], count: int, data: Any
) -> np.ndarray[Any, Any]:
    """JSON ``data`` (nested or flat, row-major) as an array of ``shape``, with type and count checks."""
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _flatten(data)
        if len(flat) != count:
            raise DataError(f"input {name!r}: 'data' holds {len(flat)} elements but shape {list(shape)} needs {count}")
        array = np.empty(count, dtype=object)
        try:
            array[:] = [to_bytes_element(v) for v in flat]
        except DataError as exc:
            raise DataError(f"input {name!r}: {exc}") from None
        return array.reshape(shape)
    try:
        raw = np.asarray(data)
    except ValueError:
        raise DataError(
            f"input {name!r}: 'data' is a ragged nested list; give it flat or with equal-length rows"
        ) from None
    if raw.size != count:
        raise DataError(f"input {name!r}: 'data' holds {raw.size} elements but shape {list(shape)} needs {count}")
    if count and dtype.kind in "iu" and raw.dtype.kind in "fO":
        # numpy turns integers beyond int64 (large UINT64 values) into floats or objects: check them one by one
        flat = _flatten(data)
        if all(type(v) is int for v in flat):
            info = np.iinfo(dtype)
            if min(flat) < info.min or max(flat) > info.max:
                raise DataError(
                    f"input {name!r}: a value in 'data' is out of range for {datatype} ({info.min}..{info.max})"
                )
            return np.array(flat, dtype=dtype).reshape(shape)
    if count and raw.dtype.kind not in _ACCEPTS[dtype.kind]:
        raise DataError(f"input {name!r}: 'data' holds {_kind_name(raw.dtype)} values, which are not {datatype}")
    if count and dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            raise DataError(
                f"input {name!r}: a value in 'data' is out of range for {datatype} ({info.min}..{info.max})"
            )
    return raw.astype(dtype, copy=False).reshape(shape)


def _kind_name(dtype: np.dtype[Any]) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point", "U": "string"}.get(
        dtype.kind, "mixed or non-numeric"
    )


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def wants_binary(request: InferRequest, name: str) -> bool:
    """Whether output ``name`` goes back as raw bytes: per-output ``binary_data``, else the request default."""
    for out in request.outputs or ():
        if out.name == name and "binary_data" in out.parameters:
            return bool(out.parameters["binary_data"])
    return bool(request.parameters.get("binary_data_output", False))


def array_to_raw(datatype: str, array: np.ndarray[Any, Any]) -> bytes:
    """A tensor's wire bytes: little-endian row-major, or length-prefixed elements for BYTES."""
    if datatype == "BYTES":
        return serialize_bytes_tensor(array)
    return np.ascontiguousarray(array, dtype=numpy_dtype(datatype)).tobytes()


def array_to_json(name: str, datatype: str, array: np.ndarray[Any, Any]) -> list[Any] | np.ndarray[Any, Any]:
    """A tensor's values, flat, ready for :func:`dump_json` (BYTES as UTF-8 strings)."""
    flat = array.reshape(-1)
    if datatype == "BYTES":
        try:
            return [to_bytes_element(v).decode("utf-8") for v in flat]
        except UnicodeDecodeError:
            raise DataError(
                f"output {name!r} holds bytes that are not UTF-8 text; ask for it with binary_data: true"
            ) from None
    return np.ascontiguousarray(flat, dtype=numpy_dtype(datatype).newbyteorder("="))


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it (else None)."""
    chunks: list[bytes] = []
    outputs = _tensor_entries(response.outputs, lambda name: wants_binary(request, name), chunks)
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    return _body(doc, chunks)


def encode_request(request: InferRequest, *, binary_inputs: bool = False) -> tuple[bytes, int | None]:
    """Encode a request as a client would (used by tests and the benchmark load generator)."""
    chunks: list[bytes] = []
    doc: dict[str, Any] = {"inputs": _tensor_entries(request.inputs, lambda _: binary_inputs, chunks)}
    if request.id is not None:
        doc["id"] = request.id
    if request.parameters:
        doc["parameters"] = request.parameters
    if request.outputs is not None:
        doc["outputs"] = [
            {"name": o.name, **({"parameters": o.parameters} if o.parameters else {})} for o in request.outputs
        ]
    return _body(doc, chunks)


def _tensor_entries(tensors: list[Tensor], binary: Callable[[str], bool], chunks: list[bytes]) -> list[dict[str, Any]]:
    """Tensors as JSON entries; the raw bytes of those ``binary`` picks go to ``chunks``, in order."""
    entries: list[dict[str, Any]] = []
    for tensor in tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        params = dict(tensor.parameters)
        if binary(tensor.name):
            raw = array_to_raw(tensor.datatype, tensor.data)
            params["binary_data_size"] = len(raw)
            chunks.append(raw)
        else:
            entry["data"] = array_to_json(tensor.name, tensor.datatype, tensor.data)
        if params:
            entry["parameters"] = params
        entries.append(entry)
    return entries


def _body(doc: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, int | None]:
    """The JSON header followed by the binary chunks, and the header's length when there are any (else None)."""
    header = dump_json(doc)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def decode_response(body: bytes, header_length: int | None = None) -> InferResponse:
    """Decode a response body (the inverse of :func:`encode_response`; for tests and clients)."""
    header, binary = (body, b"") if header_length is None else (body[:header_length], body[header_length:])
    doc = parse_json(header, "response body")
    view = memoryview(binary)
    offset = 0
    outputs: list[Tensor] = []
    for item in doc.get("outputs", []):
        datatype = item["datatype"]
        dtype = numpy_dtype(datatype)
        shape = check_shape(item["name"], item["shape"])
        params = dict(item.get("parameters") or {})
        size = params.pop("binary_data_size", None)
        if size is not None:
            array = raw_to_array(item["name"], datatype, dtype, shape, view[offset : offset + size])
            offset += size
        else:
            array = json_to_array(item["name"], datatype, dtype, shape, element_count(shape), item["data"])
        outputs.append(Tensor(item["name"], datatype, shape, array, params))
    return InferResponse(
        model_name=doc.get("model_name", ""),
        model_version=doc.get("model_version", ""),
        outputs=outputs,
        id=doc.get("id"),
        parameters=doc.get("parameters") or {},
    )


def server_metadata_json(meta: ServerMetadata) -> dict[str, Any]:
    """The server metadata answer as V2 REST JSON."""
    return {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}


def model_metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    """The model metadata answer as V2 REST JSON (``parameters.max_batch_size`` as tritonclient reads it)."""
    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [_tensor_metadata_json(t) for t in meta.inputs],
        "outputs": [_tensor_metadata_json(t) for t in meta.outputs],
        "parameters": {"max_batch_size": meta.max_batch_size},
    }


def _tensor_metadata_json(meta: TensorMetadata) -> dict[str, Any]:
    return {"name": meta.name, "datatype": meta.datatype, "shape": list(meta.shape)}
