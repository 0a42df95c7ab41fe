"""The V2 codecs: JSON, binary extension and gRPC messages round-trip every datatype and refuse bad input."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from honed.errors import DataError
from honed.serve.protocol import DATATYPES, from_numpy, grpc_codec, numpy_dtype, rest
from honed.serve.protocol.datatypes import deserialize_bytes_tensor, serialize_bytes_tensor
from honed.serve.protocol.types import InferRequest, InferResponse, RequestedOutput, Tensor

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: Any, name: str = "x") -> Tensor:
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(shapes)
    if datatype == "BYTES":
        count = int(np.prod(shape)) if shape else 1
        items = draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = items
        array = array.reshape(shape)
    else:
        dtype = numpy_dtype(datatype)
        elements = None
        if dtype.kind == "f":
            # JSON carries finite numbers only; FP16 values must survive float16 -> Python float -> float16.
            elements = st.floats(width=dtype.itemsize * 8, allow_nan=False, allow_infinity=False)
        array = draw(hnp.arrays(dtype, shape, elements=elements))
    return Tensor(name, datatype, tuple(shape), array)


@st.composite
def requests(draw: Any) -> InferRequest:
    count = draw(st.integers(1, 3))
    inputs = [draw(tensors(name=f"in{i}")) for i in range(count)]
    request_id = draw(st.none() | st.text(max_size=5))
    return InferRequest(inputs=inputs, id=request_id, parameters=draw(st.sampled_from([{}, {"custom": 3}])))


def assert_same(a: Tensor, b: Tensor) -> None:
    assert (a.name, a.datatype, a.shape) == (b.name, b.datatype, b.shape)
    assert b.data.shape == a.shape
    if a.datatype == "BYTES":
        assert [bytes(v) for v in a.data.reshape(-1)] == [bytes(v) for v in b.data.reshape(-1)]
    else:
        assert b.data.dtype == numpy_dtype(a.datatype)
        np.testing.assert_array_equal(a.data, b.data)


def utf8_only(request: InferRequest) -> bool:
    for tensor in request.inputs:
        if tensor.datatype == "BYTES":
            try:
                [bytes(v).decode("utf-8") for v in tensor.data.reshape(-1)]
            except UnicodeDecodeError:
                return False
    return True


@settings(max_examples=30, deadline=None)
@given(requests(), st.booleans())
def test_rest_request_round_trip(request: InferRequest, binary: bool) -> None:
    if not binary and not utf8_only(request):
        binary = True  # JSON carries BYTES as UTF-8 text only
    body, header_length = rest.encode_request(request, binary_inputs=binary)
    decoded = rest.decode_request(body, header_length)
    assert decoded.id == request.id
    assert decoded.parameters == request.parameters
    for a, b in zip(request.inputs, decoded.inputs, strict=True):
        assert_same(a, b)


@settings(max_examples=30, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=3), st.booleans(), st.booleans())
def test_rest_response_round_trip(outputs: list[Tensor], binary_default: bool, first_json: bool) -> None:
    for i, t in enumerate(outputs):
        t.name = f"out{i}"
    requested = [RequestedOutput(outputs[0].name, {"binary_data": not first_json})]
    request = InferRequest(inputs=[], id="r1", outputs=requested, parameters={"binary_data_output": binary_default})
    # outputs that would travel as JSON must be UTF-8 when they are BYTES
    for i, t in enumerate(outputs):
        as_json = first_json if i == 0 else not binary_default
        if as_json and t.datatype == "BYTES":
            t.data = np.array([bytes(v).hex().encode() for v in t.data.reshape(-1)], dtype=object).reshape(t.shape)
    response = InferResponse("m", "1", outputs, id="r1")
    body, header_length = rest.encode_response(response, request)
    binary_count = sum(rest.wants_binary(request, t.name) for t in outputs)
    assert (header_length is not None) == (binary_count > 0)
    decoded = rest.decode_response(body, header_length)
    assert decoded.id == "r1" and decoded.model_name == "m"
    for a, b in zip(outputs, decoded.outputs, strict=True):
        assert_same(a, b)


@settings(max_examples=30, deadline=None)
@given(requests())
def test_grpc_round_trip(request: InferRequest) -> None:
    message = grpc_codec.encode_request(request, "m", "1")
    decoded = grpc_codec.decode_request(type(message).FromString(message.SerializeToString()))
    assert decoded.id == (request.id or None)
    for a, b in zip(request.inputs, decoded.inputs, strict=True):
        assert_same(a, b)
    response = InferResponse("m", "1", request.inputs, id=request.id)
    back = grpc_codec.decode_response(grpc_codec.encode_response(response))
    for a, b in zip(request.inputs, back.outputs, strict=True):
        assert_same(a, b)


@given(st.lists(st.binary(max_size=20), max_size=6))
def test_bytes_tensor_round_trip(items: list[bytes]) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    raw = serialize_bytes_tensor(array)
    assert len(raw) == sum(4 + len(i) for i in items)
    assert deserialize_bytes_tensor(raw, len(items)) == items


def test_bytes_tensor_is_little_endian_length_prefixed() -> None:
    array = np.array([b"ab", b""], dtype=object)
    assert serialize_bytes_tensor(array) == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


def test_nested_and_flat_json_data_agree() -> None:
    flat = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    nested = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
    a = rest.decode_request(json.dumps(flat).encode()).inputs[0].data
    b = rest.decode_request(json.dumps(nested).encode()).inputs[0].data
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.array([[1, 2], [3, 4]], dtype=np.int32))


def test_datatype_table_matches_numpy() -> None:
    for name in DATATYPES:
        assert from_numpy(numpy_dtype(name)) == name


def _one(datatype: str, shape: Any, data: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[]", None, "JSON object"),
        (b'{"inputs": []}', None, "non-empty 'inputs'"),
        (_one("FP32", [2], [1.0]), None, "holds 1 elements but shape [2] needs 2"),
        (_one("FP32", [-1], [1.0]), None, "whole numbers >= 0"),
        (_one("FP99", [1], [1.0]), None, "unknown datatype"),
        (_one("INT32", [1], [1.5]), None, "floating-point values, which are not INT32"),
        (_one("UINT8", [1], [300]), None, "out of range for UINT8"),
        (_one("BOOL", [1], [1]), None, "not BOOL"),
        (_one("FP32", [2], [[1.0], [2.0, 3.0]]), None, "ragged"),
        (_one("BYTES", [1], [5]), None, "must be a string"),
        (_one("FP32", [1], [1.0]), 10_000, "Inference-Header-Content-Length is 10000"),
    ],
)
def test_bad_json_requests(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rest.decode_request(body, header_length)


def _binary(size: int, payload: bytes) -> tuple[bytes, int]:
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": size}}]}
    ).encode()
    return header + payload, len(header)


@pytest.mark.parametrize(
    ("size", "payload", "message"),
    [
        (8, b"\0" * 12, "add up to 8 bytes but 12 binary bytes follow"),
        (12, b"\0" * 8, "claims binary_data_size 12 but only 8"),
        (4, b"\0" * 4, "4 bytes of FP32 data, but shape [2] needs 8 bytes"),
    ],
)
def test_binary_lengths_that_do_not_add_up(size: int, payload: bytes, message: str) -> None:
    body, header_length = _binary(size, payload)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rest.decode_request(body, header_length)


def test_bytes_prefix_overrunning_the_buffer() -> None:
    with pytest.raises(DataError, match="claims 100 bytes"):
        deserialize_bytes_tensor(struct.pack("<I", 100) + b"abc")


def test_timeout_parameter_is_microseconds() -> None:
    assert InferRequest(inputs=[], parameters={"timeout": 250_000}).timeout_s == pytest.approx(0.25)
    with pytest.raises(DataError, match="timeout"):
        _ = InferRequest(inputs=[], parameters={"timeout": "soon"}).timeout_s


def test_grpc_raw_contents_count_must_match_inputs() -> None:
    request = InferRequest(inputs=[Tensor("x", "FP32", (1,), np.zeros(1, np.float32))])
    message = grpc_codec.encode_request(request, "m")
    message.raw_input_contents.append(b"")
    with pytest.raises(DataError, match="one buffer per input"):
        grpc_codec.decode_request(message)


def test_grpc_typed_contents() -> None:
    from tritonclient.grpc import service_pb2 as pb

    message = pb.ModelInferRequest(model_name="m")
    item = message.inputs.add(name="x", datatype="INT64", shape=[2])
    item.contents.int64_contents.extend([1, 2])
    decoded = grpc_codec.decode_request(message)
    np.testing.assert_array_equal(decoded.inputs[0].data, np.array([1, 2], dtype=np.int64))
    item.contents.int64_contents.append(3)
    with pytest.raises(DataError, match="3 elements but shape"):
        grpc_codec.decode_request(message)
