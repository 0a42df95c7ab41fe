"""A hostile-client corpus against a real ``honed serve`` with an access policy: each case asserts the status
(or gRPC code) the server answers AND that it still answers a valid request afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from honed.serve.access import token_hash
from tests.conformance import models
from tests.conformance.server import RunningServer, start_server

APP, OPS = "app-secret-token-0001", "ops-secret-token-0002"
AUTH = {"Authorization": f"Bearer {APP}"}
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
INFER = "/v2/models/fraud/infer"
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("hostile")
    models.mlp(root / "repo" / "fraud" / "1" / "model.onnx", seed=1)
    models.mlp(root / "repo" / "credit" / "1" / "model.onnx", seed=2)
    policy = root / "access.yaml"
    policy.write_text(
        "principals:\n"
        f"  - {{name: app, token_sha256: {token_hash(APP)}, models: ['fraud*'], actions: [infer, read]}}\n"
        f"  - {{name: ops, token_sha256: {token_hash(OPS)}, actions: [metrics]}}\n"
    )
    args = ["--repository", str(root / "repo"), "--access", str(policy), "--max-body-mb", "1"]
    running = start_server(args, root / "server.log")
    yield running
    assert running.stop() == 0, running.output()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url) as ch:
        yield ch


def _still_answers(http: httpx.Client) -> None:
    answer = http.post(INFER, json=BODY, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert http.get("/v2/health/ready").status_code == 200


def _raw(server: RunningServer, request: bytes) -> bytes:
    """Send raw bytes and read the status line and headers of the answer."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def _input(shape: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": []}]}


@pytest.mark.parametrize(
    "shape",
    [[0, 2**70], [-1, 8], [1] * 65, [2**40, 2**40], [LIMIT + 1], [0, 2**62, 2**62]],
    ids=["huge-dim", "negative", "rank-65", "int64-overflow", "over-body-limit", "zero-and-huge"],
)
def test_hostile_shapes_are_400(http: httpx.Client, shape: list[int]) -> None:
    answer = http.post(INFER, json=_input(shape), headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert "shape" in answer.json()["error"]
    _still_answers(http)


def test_deeply_nested_json_is_400(http: httpx.Client) -> None:
    answer = http.post(INFER, content=b"[" * 100000, headers={**AUTH, "content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    _still_answers(http)


def test_a_content_length_over_the_limit_is_413_before_the_body(http: httpx.Client, server: RunningServer) -> None:
    head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {APP}\r\nContent-Length: {10**12}\r\n\r\n"
    assert _raw(server, head.encode()).startswith(b"HTTP/1.1 413")  # no byte of the body was sent
    _still_answers(http)


def test_a_chunked_body_past_the_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b" " * (LIMIT // 2)

    answer = http.post(INFER, content=chunks(), headers=AUTH)
    assert answer.status_code == 413, answer.text
    _still_answers(http)


def test_header_floods_are_431(http: httpx.Client, server: RunningServer) -> None:
    many = "".join(f"X-F{i}: v\r\n" for i in range(10000))
    assert _raw(server, f"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode()).startswith(b"HTTP/1.1 431")
    big = "X-Big: " + "a" * (1024 * 1024) + "\r\n"
    assert _raw(server, f"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n{big}\r\n".encode()).startswith(b"HTTP/1.1 431")
    _still_answers(http)


def test_two_authorization_headers_are_400_and_counted(http: httpx.Client, server: RunningServer) -> None:
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {APP}\r\nAuthorization: Bearer {OPS}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    assert _raw(server, head.encode()).startswith(b"HTTP/1.1 400")
    assert http.post(INFER, json=BODY, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    text = http.get("/metrics", headers={"Authorization": f"Bearer {OPS}"}).text
    assert 'honed_auth_refusals_total{reason="malformed"} 2.0' in text, text
    _still_answers(http)


def test_repeated_residency_headers_are_400(http: httpx.Client) -> None:
    headers = [("authorization", f"Bearer {APP}"), ("x-data-residency", "AE"), ("x-data-residency", "SA")]
    answer = http.post(INFER, json=BODY, headers=headers)
    assert answer.status_code == 400, answer.text
    assert "residency" in answer.json()["error"]
    _still_answers(http)


def test_the_repository_index_shows_only_granted_models(http: httpx.Client, channel: grpc.Channel) -> None:
    rows = http.post("/v2/repository/index", headers=AUTH).json()
    assert [r["name"] for r in rows] == ["fraud"]
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/RepositoryIndex",
        request_serializer=pb.RepositoryIndexRequest.SerializeToString,
        response_deserializer=pb.RepositoryIndexResponse.FromString,
    )
    answer = call(pb.RepositoryIndexRequest(), metadata=[("authorization", f"Bearer {APP}")])
    assert [m.name for m in answer.models] == ["fraud"]
    assert http.get("/v2/models/credit", headers=AUTH).status_code == 403


def _grpc_infer(channel: grpc.Channel, raw: bytes, metadata: list[tuple[str, str]]) -> pb.ModelInferResponse:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer", response_deserializer=pb.ModelInferResponse.FromString
    )
    return call(raw, metadata=metadata)


def _grpc_request(shape: list[int]) -> bytes:
    message = pb.ModelInferRequest(model_name="fraud")
    message.inputs.add(name="x", datatype="FP32", shape=shape)
    message.raw_input_contents.append(
        np.ones(shape if min(shape) >= 0 else [0], dtype=np.float32).tobytes() if len(shape) < 3 else b""
    )
    return message.SerializeToString()


GOOD = [("authorization", f"Bearer {APP}")]


@pytest.mark.parametrize(
    ("raw", "metadata", "code"),
    [
        (b"\xff\xff\xff\xff", GOOD, grpc.StatusCode.INVALID_ARGUMENT),
        (b"\xff" * 1000, [], grpc.StatusCode.UNAUTHENTICATED),
        (_grpc_request([1, 8]), [("authorization", "Basic dXNlcjpwYXNz")], grpc.StatusCode.UNAUTHENTICATED),
        (_grpc_request([1, 8]), [*GOOD, ("authorization", f"Bearer {OPS}")], grpc.StatusCode.INVALID_ARGUMENT),
        (_grpc_request([-1, 8]), GOOD, grpc.StatusCode.INVALID_ARGUMENT),
        (_grpc_request([1] * 65), GOOD, grpc.StatusCode.INVALID_ARGUMENT),
        (_grpc_request([0, 2**62, 2**62]), GOOD, grpc.StatusCode.INVALID_ARGUMENT),
        (
            _grpc_request([1, 8]),
            [*GOOD, ("x-data-residency", "AE"), ("x-data-residency", "SA")],
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
    ids=["malformed", "no-token-garbage", "basic", "two-tokens", "negative", "rank-65", "overflow", "residency-twice"],
)
def test_hostile_grpc_calls(
    channel: grpc.Channel, raw: bytes, metadata: list[tuple[str, str]], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        _grpc_infer(channel, raw, metadata)
    assert refused.value.code() == code, refused.value.details()
    answer = _grpc_infer(channel, _grpc_request([1, 8]), GOOD)
    assert list(answer.outputs[0].shape) == [1, 4]


def test_a_large_body_is_decoded_off_the_event_loop(tmp_path: Path) -> None:
    """While a large body's decode is held at a gate, the health probe still answers: decoding is not on the loop."""
    import asyncio
    import threading

    import orjson

    from honed.serve.dataplane import OFFLOAD_BYTES
    from tests.conformance.gated import Gate, gated_server

    models.mlp(tmp_path / "fraud" / "1" / "model.onnx")
    entered, release = threading.Event(), threading.Event()

    async def main() -> None:
        gate = Gate()
        gate.open()
        async with gated_server(tmp_path, gate) as server:
            assert server.http_app is not None
            decode = server.http_app.decode_request

            def held(*args: Any, **kwargs: Any) -> Any:
                entered.set()
                release.wait(60)
                return decode(*args, **kwargs)

            server.http_app.decode_request = held
            body = orjson.dumps(BODY) + b" " * OFFLOAD_BYTES
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60) as client:
                infer = asyncio.ensure_future(client.post(INFER, content=body))
                await asyncio.to_thread(entered.wait, 60)
                assert (await client.get("/v2/health/live")).status_code == 200
                release.set()
                assert (await infer).status_code == 200

    asyncio.run(main())
