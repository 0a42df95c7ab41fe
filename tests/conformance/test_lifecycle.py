"""Lifecycle against a real server: graceful drain on SIGTERM, a full queue answering 429 (REST) and
RESOURCE_EXHAUSTED (gRPC), load shedding by the queue-time bound (refused on arrival by the batcher's estimate,
or shed after waiting it; 429 / RESOURCE_EXHAUSTED with a retry-after either way), the ``timeout`` parameter
ending a queued request, and a client that gives up taking its request off the queue.

Every model run waits at a :class:`~tests.conformance.gated.Gate` until the test lets it through, so a request
is running, or queued behind one that is, because the test made it so: nothing depends on how fast the machine
computes.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from honed.serve.instances import ModelExecutor
from honed.serve.server import Server
from tests.conformance import models
from tests.conformance.gated import Gate, gated_server, sample, until

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
INFER = "/v2/models/m/infer"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Model ``m``: one instance, one row per run, room for two queued requests."""
    models.mlp(tmp_path / "m" / "1" / "model.onnx")
    (tmp_path / "m" / "config.yaml").write_text("warmup: false\nbatching:\n  max_batch_size: 1\n  max_queue_size: 2\n")
    return tmp_path


def _client(port: int | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)


def _outcomes(server: Server, outcome: str) -> float:
    return sample(server, "honed_requests_total", model="m", version="1", outcome=outcome)


def _runs(server: Server) -> int:
    executor = server.dataplane.repository.get("m")[1]
    assert isinstance(executor, ModelExecutor)
    return executor.batcher.runs


def _run(repo: Path, scenario: Callable[[Gate, Server, httpx.AsyncClient], Awaitable[None]], **options: Any) -> None:
    """Run ``scenario`` against a gated server over ``repo`` (``options``: more ServerOptions), with an HTTP client."""

    async def main() -> None:
        gate = Gate()
        async with gated_server(repo, gate, **options) as server, _client(server.http_port) as client:
            await scenario(gate, server, client)

    asyncio.run(main())


async def _running_and_queued(
    client: httpx.AsyncClient, gate: Gate, server: Server, queued: int
) -> list[asyncio.Future[httpx.Response]]:
    """One request held in its model run, then ``queued`` more waiting behind it in the batch queue."""
    running = asyncio.ensure_future(client.post(INFER, json=BODY))
    await gate.holding(1)
    waiting = [asyncio.ensure_future(client.post(INFER, json=BODY)) for _ in range(queued)]
    await until(lambda: server.dataplane.inflight == 1 + queued, f"{queued} request(s) queued")
    return [running, *waiting]


def test_sigterm_drains_in_flight_requests_and_turns_readiness_off(repo: Path) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        ahead = await _running_and_queued(client, gate, server, queued=2)
        handler = signal.getsignal(signal.SIGTERM)
        assert handler not in (signal.SIG_DFL, signal.SIG_IGN, None), "the server must own SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: server.dataplane.draining, "SIGTERM reaching the server")
        async with _client(server.http_port) as probe:
            assert (await probe.get("/v2/health/ready")).status_code == 503
            assert (await probe.get("/v2/health/live")).status_code == 200
        assert not any(f.done() for f in ahead)  # nothing was answered while the run is held
        gate.open()
        answers = await asyncio.gather(*ahead)
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]

    _run(repo, scenario)


def test_full_queue_answers_429_with_retry_after_and_keeps_serving(repo: Path) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        ahead = await _running_and_queued(client, gate, server, queued=2)
        full = await client.post(INFER, json=BODY)
        assert full.status_code == 429, full.text
        assert int(full.headers["retry-after"]) >= 1
        assert "queue" in full.json()["error"]
        gate.open()
        assert [a.status_code for a in await asyncio.gather(*ahead)] == [200, 200, 200]
        assert (await client.post(INFER, json=BODY)).status_code == 200

    _run(repo, scenario)


def test_requests_beyond_the_concurrency_cap_get_503_and_the_server_keeps_serving(repo: Path) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        ahead = await _running_and_queued(client, gate, server, queued=1)  # two in progress: the cap
        over = await client.post(INFER, json=BODY)
        assert over.status_code == 503, over.text
        gate.open()
        assert [a.status_code for a in await asyncio.gather(*ahead)] == [200, 200]
        assert (await client.post(INFER, json=BODY)).status_code == 200

    _run(repo, scenario, max_concurrency=2)


def test_timeout_parameter_ends_a_queued_request_with_504(repo: Path) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        (running,) = await _running_and_queued(client, gate, server, queued=0)
        # The only instance is held, so this request can only wait in the queue until its 20 ms run out.
        late = await client.post(INFER, json={**BODY, "parameters": {"timeout": 20_000}})
        assert late.status_code == 504, late.text
        assert "timeout" in late.json()["error"]
        assert not running.done()
        assert _outcomes(server, "timeout") == 1
        gate.open()
        assert (await running).status_code == 200

    _run(repo, scenario)


def test_a_client_that_gives_up_is_taken_off_the_queue(repo: Path) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        (running,) = await _running_and_queued(client, gate, server, queued=0)
        runs = _runs(server)
        for gave_up in range(1, 4):
            _, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
            body = httpx.Request("POST", "http://x" + INFER, json=BODY).read()
            writer.write(
                b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (INFER.encode(), len(body), body)
            )
            await writer.drain()
            await until(lambda: server.dataplane.inflight == 2, "the request queued")
            writer.close()  # the client hangs up while its request waits
            await writer.wait_closed()
            gone = f"{gave_up} request(s) taken off the queue"
            await until(lambda n=gave_up: _outcomes(server, "cancelled") == n, gone)
            assert server.dataplane.inflight == 1
        gate.open()
        assert (await running).status_code == 200
        assert _runs(server) == runs  # the requests given up on never ran

    _run(repo, scenario)


def _grpc_input() -> Any:
    import tritonclient.grpc as grpcclient

    inp = grpcclient.InferInput("x", [1, 8], "FP32")
    inp.set_data_from_numpy(np.ones((1, 8), np.float32))
    return inp


def test_full_queue_over_grpc_is_resource_exhausted(repo: Path) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        ahead = await _running_and_queued(client, gate, server, queued=2)
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            with pytest.raises(InferenceServerException) as info:
                await asyncio.to_thread(grpc.infer, "m", [_grpc_input()])
            assert str(info.value.status()) == "StatusCode.RESOURCE_EXHAUSTED"
            gate.open()
            assert [a.status_code for a in await asyncio.gather(*ahead)] == [200, 200, 200]
            result = await asyncio.to_thread(grpc.infer, "m", [_grpc_input()])
            assert result.as_numpy("y").shape == (1, 4)
        finally:
            grpc.close()

    _run(repo, scenario)


def test_a_grpc_call_that_is_cancelled_is_taken_off_the_queue(repo: Path) -> None:
    import tritonclient.grpc as grpcclient

    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        (running,) = await _running_and_queued(client, gate, server, queued=0)
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            call = grpc.async_infer("m", [_grpc_input()], callback=lambda result, error: None)
            await until(lambda: server.dataplane.inflight == 2, "the gRPC call queued")
            call.cancel()
            await until(lambda: _outcomes(server, "cancelled") == 1, "the cancelled call taken off the queue")
            gate.open()
            assert (await running).status_code == 200
        finally:
            grpc.close()

    _run(repo, scenario)


def _shedding_repo(root: Path, bound_ms: float) -> Path:
    """Model ``m`` as in ``repo`` (room for four queued requests), with a queue-time bound of ``bound_ms``."""
    models.mlp(root / "m" / "1" / "model.onnx")
    (root / "m" / "config.yaml").write_text(
        f"warmup: false\nbatching:\n  max_batch_size: 1\n  max_queue_size: 4\n  max_queue_time_ms: {bound_ms}\n"
    )
    return root


def _shed(server: Server, reason: str) -> float:
    return sample(server, "honed_shed_total", model="m", reason=reason)


def _grpc_refusal(port: int | None) -> grpc.RpcError:
    """The error one raw V2 ModelInfer call for ``m`` ends with (raw, to read its trailing metadata)."""
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[1, 8])
    message.raw_input_contents.append(np.ones((1, 8), dtype=np.float32).tobytes())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(message, timeout=60)
    return refused.value


def _retry_after(error: grpc.RpcError) -> int:
    return int(dict(error.trailing_metadata() or ())["retry-after"])


def test_a_request_queued_past_the_bound_is_shed_with_429_and_resource_exhausted(tmp_path: Path) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        (running,) = await _running_and_queued(client, gate, server, queued=0)
        runs = _runs(server)
        # Nothing has run to the end yet, so there is no estimate and the request is admitted; the only instance
        # is held, so it can only wait in the queue until the 20 ms bound passes.
        shed = await client.post(INFER, json=BODY)
        assert shed.status_code == 429, shed.text
        assert int(shed.headers["retry-after"]) >= 1
        assert "queue-time bound" in shed.json()["error"]
        assert _shed(server, "queue_time") == 1 and _outcomes(server, "overloaded") == 1
        refused = await asyncio.to_thread(_grpc_refusal, server.grpc_port)
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_after(refused) >= 1
        assert _shed(server, "queue_time") == 2 and _shed(server, "estimate") == 0
        assert not running.done() and _runs(server) == runs  # the shed requests never ran
        gate.open()
        assert (await running).status_code == 200
        assert (await client.post(INFER, json=BODY)).status_code == 200  # an idle instance: served at once

    _run(_shedding_repo(tmp_path, 20), scenario)


def _estimate_15_s_ahead(server: Server) -> None:
    """Set the batcher's service-time estimate as if one-row runs had been measured at 10 s each: with one row
    queued and one running ahead (half done, on average), the next request would wait about 15 s."""
    executor = server.dataplane.repository.get("m")[1]
    assert isinstance(executor, ModelExecutor)
    executor.batcher.scheduler.record_run(1, 10.0)


def test_a_request_that_would_wait_past_the_bound_is_refused_at_once_with_429_and_resource_exhausted(
    tmp_path: Path,
) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        (running, queued) = await _running_and_queued(client, gate, server, queued=1)
        _estimate_15_s_ahead(server)
        refused = await client.post(INFER, json=BODY)
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "15"
        assert "would wait about 15000 ms" in refused.json()["error"]
        error = await asyncio.to_thread(_grpc_refusal, server.grpc_port)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_after(error) == 15
        assert "10000 ms queue-time bound" in str(error.details())
        assert _shed(server, "estimate") == 2 and _shed(server, "queue_time") == 0
        assert _shed(server, "queue_full") == 0 and _outcomes(server, "overloaded") == 2
        assert server.dataplane.inflight == 2  # refused on arrival: neither waited in the queue
        gate.open()
        assert [(await r).status_code for r in (running, queued)] == [200, 200]

    _run(_shedding_repo(tmp_path, 10_000), scenario)


def test_a_rest_request_its_queue_refuses_is_answered_from_its_headers_before_its_body_is_read(
    tmp_path: Path,
) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient) -> None:
        (running, queued) = await _running_and_queued(client, gate, server, queued=1)
        _estimate_15_s_ahead(server)
        # Bodies that are not V2 requests at all: decoded, they would be 400s; refused from the headers, they are
        # 429s, and the connection they came on goes on answering.
        for path in (INFER, "/v2/models/m/versions/1/infer"):
            refused = await client.post(path, content=b"{not json", headers={"content-type": "application/json"})
            assert refused.status_code == 429, refused.text
            assert refused.headers["retry-after"] == "15" and "would wait about 15000 ms" in refused.json()["error"]
        assert _shed(server, "estimate") == 2 and _outcomes(server, "overloaded") == 2
        assert _outcomes(server, "invalid") == 0 and server.dataplane.inflight == 2
        unknown = await client.post("/v2/models/nope/infer", json=BODY)
        assert unknown.status_code == 404  # what the headers cannot decide is left to the app
        gate.open()
        assert [(await r).status_code for r in (running, queued)] == [200, 200]
        assert (await client.post(INFER, json=BODY)).status_code == 200

    _run(_shedding_repo(tmp_path, 10_000), scenario)
