"""Request tracing against a real server in this process: the caller's W3C ``traceparent`` is the parent of the
server span on REST and on gRPC, the span carries the HTTP/RPC attributes and the model, version, batch size and
queue time, with receive / queue / batch / compute children; sampling follows the caller or the configured share;
access lines carry the trace id.

Spans go to OpenTelemetry's in-memory exporter through the same BatchSpanProcessor the OTLP export uses; a
:class:`~tests.conformance.gated.Gate` holds model runs so that "two requests share one batch" is set up, not
hoped for.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tritonclient.grpc import service_pb2 as pb

from honed.errors import InvalidArgument
from honed.serve.server import Server
from honed.serve.tracing import Tracing, TracingConfig, http_route
from tests.conformance import models
from tests.conformance.gated import Gate, gated_server, until

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Model ``m``: one instance, batches of up to 4 rows."""
    models.mlp(tmp_path / "m" / "1" / "model.onnx")
    (tmp_path / "m" / "config.yaml").write_text("warmup: false\nbatching:\n  max_batch_size: 4\n")
    return tmp_path


Scenario = Callable[[Gate, Server, httpx.AsyncClient, grpc.aio.Channel], Awaitable[None]]


def _traced(repo: Path, scenario: Scenario, sample: float = 1.0) -> list[ReadableSpan]:
    """Run ``scenario`` against a traced, gated server; return every span it exported."""
    exporter = InMemorySpanExporter()
    tracing = Tracing.start(TracingConfig("http://127.0.0.1:4318", sample), exporter=exporter)

    async def main() -> None:
        gate = Gate()
        async with (
            gated_server(repo, gate, tracing=tracing) as server,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60) as client,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel,
        ):
            await scenario(gate, server, client, channel)

    try:
        asyncio.run(main())
        assert tracing.flush()
        return list(exporter.get_finished_spans())
    finally:
        tracing.shutdown()


async def _grpc_infer(channel: grpc.aio.Channel, model: str = "m", metadata: Any = ()) -> pb.ModelInferResponse:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="x", datatype="FP32", shape=[1, 8])
    message.raw_input_contents.append(np.ones((1, 8), dtype=np.float32).tobytes())
    call = channel.unary_unary(
        MODEL_INFER,
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    return await call(message, metadata=metadata, timeout=60)


def _servers(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == SpanKind.SERVER]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id}


def _check_infer_tree(spans: list[ReadableSpan], server: ReadableSpan) -> None:
    """The server span continues the caller's trace and holds receive, queue and batch (with compute) in order."""
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == PARENT_ID
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    attrs = server.attributes or {}
    assert attrs["honed.model.name"] == "m" and attrs["honed.model.version"] == "1"
    assert attrs["honed.batch.size"] == 1 and attrs["honed.batch.requests"] == 1
    assert isinstance(attrs["honed.queue.duration"], float) and attrs["honed.queue.duration"] >= 0
    children = _children(spans, server)
    assert set(children) == {"receive", "queue", "batch"}
    receive, queue, batch = children["receive"], children["queue"], children["batch"]
    assert server.start_time is not None and server.end_time is not None
    assert receive.start_time == server.start_time
    for earlier, later in ((receive, queue), (queue, batch)):
        assert earlier.end_time is not None and later.start_time is not None
        assert earlier.end_time <= later.start_time
    assert batch.end_time is not None and batch.end_time <= server.end_time
    compute = _children(spans, batch)["compute"]
    assert compute.start_time is not None and batch.start_time is not None
    assert batch.start_time <= compute.start_time and compute.end_time == batch.end_time
    assert (batch.attributes or {})["honed.batch.size"] == 1


def test_rest_server_span_continues_the_callers_trace(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        gate.open()
        headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=abc", "user-agent": "tracing-test"}
        answer = await client.post("/v2/models/m/infer", json=BODY, headers=headers)
        assert answer.status_code == 200, answer.text
        assert (await client.get("/v2/health/ready")).status_code == 200  # the probes are not traced

    with caplog.at_level(logging.INFO, logger="honed.serve.access"):
        spans = _traced(repo, scenario)
    (server,) = _servers(spans)
    assert server.name == "POST /v2/models/{model}/infer"
    attrs = server.attributes or {}
    assert attrs["http.request.method"] == "POST"
    assert attrs["http.route"] == "/v2/models/{model}/infer"
    assert attrs["url.path"] == "/v2/models/m/infer"
    assert attrs["http.response.status_code"] == 200
    assert attrs["server.address"] == "127.0.0.1" and attrs["client.address"] == "127.0.0.1"
    assert attrs["user_agent.original"] == "tracing-test"
    assert server.context.trace_state.get("vendor") == "abc"
    assert server.status.status_code == StatusCode.UNSET
    _check_infer_tree(spans, server)
    lines = [r.getMessage() for r in caplog.records if r.name == "honed.serve.access"]
    assert len(lines) == 1
    assert lines[0].startswith("POST /v2/models/m/infer 200 ")
    assert f"trace_id={TRACE_ID}" in lines[0] and f"span_id={server.context.span_id:016x}" in lines[0]


def test_grpc_server_span_continues_the_callers_trace(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        gate.open()
        answer = await _grpc_infer(channel, metadata=(("traceparent", TRACEPARENT), ("tracestate", "vendor=abc")))
        assert answer.model_name == "m"
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await _grpc_infer(channel, model="nope", metadata=(("traceparent", TRACEPARENT),))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    with caplog.at_level(logging.INFO, logger="honed.serve.access"):
        spans = _traced(repo, scenario)
    ok, missing = sorted(_servers(spans), key=lambda s: s.start_time or 0)
    assert ok.name == "inference.GRPCInferenceService/ModelInfer"
    attrs = ok.attributes or {}
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.service"] == "inference.GRPCInferenceService" and attrs["rpc.method"] == "ModelInfer"
    assert attrs["rpc.grpc.status_code"] == 0
    assert ok.context.trace_state.get("vendor") == "abc"
    _check_infer_tree(spans, ok)
    # NOT_FOUND is the caller's mistake: recorded, not marked as a server failure, and no model attributes
    assert (missing.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert missing.status.status_code == StatusCode.UNSET
    assert "honed.model.name" not in (missing.attributes or {})
    lines = [r.getMessage() for r in caplog.records if r.name == "honed.serve.access"]
    assert [line.split(" ")[:2] for line in lines] == [[MODEL_INFER, "OK"], [MODEL_INFER, "NOT_FOUND"]]
    assert all(f"trace_id={TRACE_ID}" in line for line in lines)


def test_requests_that_share_a_batch_say_so(repo: Path) -> None:
    """One run held at the gate; two requests queue behind it and then run as one batch of 2 rows."""

    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        first = asyncio.ensure_future(client.post("/v2/models/m/infer", json=BODY))
        await gate.holding(1)
        later = [
            asyncio.ensure_future(client.post("/v2/models/m/infer", json=BODY)),
            asyncio.ensure_future(_grpc_infer(channel)),
        ]
        await until(lambda: server.dataplane.inflight == 3, "two requests queued behind the running one")
        gate.open()
        assert (await first).status_code == 200
        rest, _ = await asyncio.gather(*later)
        assert rest.status_code == 200

    spans = _traced(repo, scenario)
    servers = sorted(_servers(spans), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["honed.batch.requests"] for s in servers] == [1, 2, 2]
    assert [(s.attributes or {})["honed.batch.size"] for s in servers] == [1, 2, 2]
    # the queued two waited at least as long as the held run took, which the first one did not
    first_batch = _children(spans, servers[0])["batch"]
    for queued in servers[1:]:
        queue = _children(spans, queued)["queue"]
        assert queue.end_time is not None and first_batch.end_time is not None
        assert queue.end_time >= first_batch.end_time
    assert len({s.context.trace_id for s in servers}) == 3  # no traceparent: each request starts its own trace


def test_a_client_that_goes_away_leaves_its_queue_span_and_no_status(repo: Path) -> None:
    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        first = asyncio.ensure_future(client.post("/v2/models/m/infer", json=BODY))
        await gate.holding(1)
        gone = asyncio.ensure_future(client.post("/v2/models/m/infer", json=BODY))
        await until(lambda: server.dataplane.inflight == 2, "a request queued behind the running one")
        gone.cancel()
        await until(lambda: server.dataplane.inflight == 1, "the queued request taken off the queue")
        gate.open()
        assert (await first).status_code == 200

    spans = _traced(repo, scenario)
    answered, dropped = sorted(_servers(spans), key=lambda s: s.start_time or 0)
    assert (answered.attributes or {})["http.response.status_code"] == 200
    assert "http.response.status_code" not in (dropped.attributes or {})
    assert dropped.status.status_code == StatusCode.UNSET
    assert set(_children(spans, dropped)) == {"receive", "queue"}  # never ran: no batch, but its wait is recorded


def test_sampling_zero_exports_nothing_but_keeps_a_callers_decision(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"

    async def scenario(gate: Gate, server: Server, client: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        gate.open()
        for _ in range(3):
            assert (await client.post("/v2/models/m/infer", json=BODY)).status_code == 200
            await _grpc_infer(channel)
        for header in (unsampled, "00-not-a-trace-01"):  # the caller's "no"; a malformed one falls to the share
            assert (await client.post("/v2/models/m/infer", json=BODY, headers={"traceparent": header})).is_success
        sampled = await client.post("/v2/models/m/infer", json=BODY, headers={"traceparent": TRACEPARENT})
        assert sampled.is_success

    with caplog.at_level(logging.INFO, logger="honed.serve.access"):
        spans = _traced(repo, scenario, sample=0.0)
    (server,) = _servers(spans)  # only the request whose caller sampled it
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    lines = [r.getMessage() for r in caplog.records if r.name == "honed.serve.access"]
    assert len(lines) == 1 and f"trace_id={TRACE_ID}" in lines[0]  # requests not sampled write no access line


def test_http_route_templates() -> None:
    assert http_route("/v2") == "/v2"
    assert http_route("/v2/models/m") == "/v2/models/{model}"
    assert http_route("/v2/models/m/versions/3/infer") == "/v2/models/{model}/versions/{version}/infer"
    assert http_route("/v2/models/m/ready") == "/v2/models/{model}/ready"
    assert http_route("/v2/repository/models/m/load") == "/v2/repository/models/{model}/load"
    assert http_route("/v2/repository/index") == "/v2/repository/index"
    assert http_route("/v2/models/m/infer/extra") is None
    assert http_route("/elsewhere") is None


@pytest.mark.parametrize(
    ("endpoint", "sample", "message"),
    [
        ("127.0.0.1:4318", 1.0, "--otlp-endpoint must be an http(s) URL"),
        ("ftp://collector:4318", 1.0, "--otlp-endpoint must be an http(s) URL"),
        ("http://collector:99999", 1.0, "--otlp-endpoint must be an http(s) URL"),
        ("http://collector:4318?x=1", 1.0, "--otlp-endpoint must be an http(s) URL"),
        ("http://collector:4318", 1.5, "--trace-sample must be a share between 0 and 1"),
        ("http://collector:4318", -0.1, "--trace-sample must be a share between 0 and 1"),
    ],
)
def test_bad_tracing_config(endpoint: str, sample: float, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        TracingConfig(endpoint, sample)


def test_traces_url() -> None:
    assert TracingConfig("http://c:4318").traces_url == "http://c:4318/v1/traces"
    assert TracingConfig("https://c/otlp/v1/traces").traces_url == "https://c/otlp/v1/traces"
