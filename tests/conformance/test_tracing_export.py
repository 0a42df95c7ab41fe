"""Tracing from the command line: a real ``honed serve --otlp-endpoint`` process exports its spans over OTLP/HTTP
to a real receiver (a small http.server on loopback that decodes ``POST /v1/traces`` with opentelemetry-proto);
``--trace-sample 0`` sends nothing; bad tracing flags and a missing SDK exit 2; and a server without an endpoint
never imports OpenTelemetry.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from honed.cli.main import run
from tests.conformance import models
from tests.conformance.server import ROOT, start_server

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: keeps every decoded export request."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                received.paths.append(self.path)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                received.requests.append(message)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, str], object]]:
        """Every received span with its resource's string attributes."""
        out = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                out.extend((resource, span) for scope in resource_spans.scope_spans for span in scope.spans)
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return models.mlp(tmp_path / "m" / "model.onnx").parent


def test_a_real_server_exports_its_spans_over_otlp_http(tmp_path: Path, model: Path, receiver: Receiver) -> None:
    server = start_server([str(model), "--otlp-endpoint", receiver.endpoint, "--trace-sample", "1"], tmp_path / "log")
    try:
        traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
        answer = httpx.post(f"{server.base}/v2/models/m/infer", json=BODY, headers={"traceparent": traceparent})
        assert answer.status_code == 200, answer.text
        assert np.asarray(answer.json()["outputs"][0]["data"]).shape == (4,)
    finally:
        assert server.stop() == 0, server.output()  # SIGTERM: the server flushes its spans before it exits
    assert set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans()
    by_name = {span.name: (resource, span) for resource, span in spans}  # type: ignore[attr-defined]
    assert set(by_name) == {"POST /v2/models/{model}/infer", "receive", "queue", "batch", "compute"}
    resource, root = by_name["POST /v2/models/{model}/infer"]
    assert resource["service.name"] == "honed-serve"
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT_ID  # type: ignore[attr-defined]
    attrs = {a.key: a.value for a in root.attributes}  # type: ignore[attr-defined]
    assert attrs["honed.model.name"].string_value == "m"
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["honed.batch.size"].int_value == 1
    log = server.output()
    assert "POST /v2/models/m/infer 200 " in log and f"trace_id={TRACE_ID}" in log


def test_sampling_zero_sends_nothing(tmp_path: Path, model: Path, receiver: Receiver) -> None:
    server = start_server([str(model), "--otlp-endpoint", receiver.endpoint, "--trace-sample", "0"], tmp_path / "log")
    try:
        for _ in range(5):
            assert httpx.post(f"{server.base}/v2/models/m/infer", json=BODY).status_code == 200
    finally:
        assert server.stop() == 0, server.output()
    assert receiver.spans() == []
    assert "trace_id=" not in server.output()  # and no access line for requests that were not sampled


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--otlp-endpoint", "localhost:4318"], "--otlp-endpoint must be an http(s) URL"),
        (["--otlp-endpoint", "http://127.0.0.1:4318", "--trace-sample", "2"], "--trace-sample must be a share"),
        (["--trace-sample", "0.5"], "--trace-sample needs --otlp-endpoint"),
    ],
)
def test_bad_tracing_flags_exit_2(
    model: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(["serve", str(model), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_sdk_exits_2_with_the_extra_to_install(
    model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now fails as if it were not installed
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    assert run(["serve", str(model), "--otlp-endpoint", "http://127.0.0.1:4318"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'honed[tracing]'" in err and "Traceback" not in err


_NO_OTEL = """
import asyncio, sys
import httpx
from pathlib import Path
from honed.cli import main  # the CLI, as `honed serve` loads it
from honed.serve import launch
from honed.serve.server import Server, ServerOptions, build

async def go():
    server = Server(build(Path(sys.argv[1])), ServerOptions(http="127.0.0.1:0", grpc="127.0.0.1:0"))
    task = asyncio.ensure_future(server.serve())
    while not await server.dataplane.ready():
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/m/infer"
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
        answer = await client.post(url, json=body, headers={"traceparent": "00-%s-%s-01" % ("1" * 32, "2" * 16)})
        assert answer.status_code == 200, answer.text
    server.request_shutdown()
    await task

asyncio.run(go())
print(sorted(n for n in sys.modules if n.split(".")[0] == "opentelemetry"))
"""


def test_without_an_endpoint_opentelemetry_is_never_imported(model: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", _NO_OTEL, str(model)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
