"""V2 gRPC messages <-> :mod:`.types`, over the official ``inference`` proto.

The generated stubs are the ones shipped in ``tritonclient.grpc`` (Triton's ``grpc_service.proto`` is a
superset of KServe's ``open_inference_grpc.proto`` and wire-compatible with it), so honed carries no copy of the
.proto. Inputs arrive either as typed ``contents`` or as ``raw_input_contents`` (one buffer per input, in input
order); outputs always go back as ``raw_output_contents``, which is what tritonclient reads fastest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from honed.errors import DataError
from honed.serve.protocol import types
from honed.serve.protocol.datatypes import numpy_dtype, to_bytes_element
from honed.serve.protocol.rest import array_to_raw, raw_to_array

# Which typed ``contents`` field carries each datatype (FP16 has none: it travels raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_from_pb(params: Any) -> types.Parameters:
    """A protobuf ``map<string, InferParameter>`` as plain values."""
    out: types.Parameters = {}
    for key, value in params.items():
        kind = value.WhichOneof("parameter_choice")
        if kind is not None:
            out[key] = getattr(value, kind)
    return out


def parameters_to_pb(params: types.Parameters, target: Any) -> None:
    """Fill a protobuf parameter map from plain values."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)


def decode_request(message: pb.ModelInferRequest, *, max_elements: int = types.MAX_ELEMENTS) -> types.InferRequest:
    """A ``ModelInferRequest`` as an :class:`InferRequest`, with the same checks as the REST codec."""
    if not message.inputs:
        raise DataError("the infer request needs at least one input")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise DataError(
            f"raw_input_contents holds {len(raw)} buffers but the request has {len(message.inputs)} inputs; "
            "give one buffer per input, in input order"
        )
    inputs: list[types.Tensor] = []
    seen: set[str] = set()
    for index, item in enumerate(message.inputs):
        name = item.name
        if not name:
            raise DataError("every input needs a name")
        if name in seen:
            raise DataError(f"input {name!r} is given twice")
        seen.add(name)
        datatype = item.datatype
        dtype = numpy_dtype(datatype)
        shape = types.check_shape(name, list(item.shape), max_elements)
        if raw:
            array = raw_to_array(name, datatype, dtype, shape, raw[index])
        else:
            array = _from_contents(name, datatype, dtype, shape, item.contents)
        inputs.append(types.Tensor(name, datatype, shape, array, parameters_from_pb(item.parameters)))
    outputs = [types.RequestedOutput(o.name, parameters_from_pb(o.parameters)) for o in message.outputs] or None
    return types.InferRequest(
        inputs=inputs,
        id=message.id or None,
        outputs=outputs,
        parameters=parameters_from_pb(message.parameters),
    )


def _from_contents(
    name: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], contents: Any
) -> np.ndarray[Any, Any]:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise DataError(f"input {name!r}: {datatype} data must be sent in raw_input_contents")
    values = getattr(contents, field)
    count = types.element_count(shape)
    if len(values) != count:
        raise DataError(f"input {name!r}: contents hold {len(values)} elements but shape {list(shape)} needs {count}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = [to_bytes_element(v) for v in values]
        return array.reshape(shape)
    if dtype.kind in "iu" and count:
        info = np.iinfo(dtype)
        if min(values) < info.min or max(values) > info.max:
            raise DataError(f"input {name!r}: a value is out of range for {datatype} ({info.min}..{info.max})")
    return np.asarray(values, dtype=dtype).reshape(shape)


def encode_response(response: types.InferResponse) -> pb.ModelInferResponse:
    """An :class:`InferResponse` as a ``ModelInferResponse`` with ``raw_output_contents``."""
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    parameters_to_pb(response.parameters, message.parameters)
    for tensor in response.outputs:
        out = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        parameters_to_pb(tensor.parameters, out.parameters)
        message.raw_output_contents.append(array_to_raw(tensor.datatype, tensor.data))
    return message


def encode_request(request: types.InferRequest, model_name: str, model_version: str = "") -> pb.ModelInferRequest:
    """An :class:`InferRequest` as a ``ModelInferRequest`` with raw inputs (for tests and clients)."""
    message = pb.ModelInferRequest(model_name=model_name, model_version=model_version, id=request.id or "")
    parameters_to_pb(request.parameters, message.parameters)
    for tensor in request.inputs:
        item = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        parameters_to_pb(tensor.parameters, item.parameters)
        message.raw_input_contents.append(array_to_raw(tensor.datatype, tensor.data))
    for out in request.outputs or ():
        parameters_to_pb(out.parameters, message.outputs.add(name=out.name).parameters)
    return message


def decode_response(message: pb.ModelInferResponse) -> types.InferResponse:
    """A ``ModelInferResponse`` as an :class:`InferResponse` (the inverse of :func:`encode_response`)."""
    outputs: list[types.Tensor] = []
    for index, item in enumerate(message.outputs):
        shape = types.check_shape(item.name, list(item.shape))
        dtype = numpy_dtype(item.datatype)
        array = raw_to_array(item.name, item.datatype, dtype, shape, message.raw_output_contents[index])
        outputs.append(types.Tensor(item.name, item.datatype, shape, array, parameters_from_pb(item.parameters)))
    return types.InferResponse(
        model_name=message.model_name,
        model_version=message.model_version,
        outputs=outputs,
        id=message.id or None,
        parameters=parameters_from_pb(message.parameters),
    )


def encode_server_metadata(meta: types.ServerMetadata) -> pb.ServerMetadataResponse:
    """The server metadata answer as a ``ServerMetadataResponse``."""
    return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=list(meta.extensions))


def encode_model_metadata(meta: types.ModelMetadata) -> pb.ModelMetadataResponse:
    """The model metadata answer as a ``ModelMetadataResponse`` (the message has no place for max_batch_size)."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=list(meta.versions),
        platform=meta.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in meta.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in meta.outputs],
    )
