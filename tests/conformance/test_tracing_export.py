"""Tracing from the command line: a real ``honed serve --otlp-endpoint`` process exports its spans over OTLP/HTTP
to a real receiver (a small http.server on loopback that decodes ``POST /v1/traces`` with opentelemetry-proto);
``--trace-sample 0`` sends nothing; bad tracing flags and a missing SDK exit 2; and a server without an endpoint
never imports OpenTelemetry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from honed.cli.main import run
from tests.conformance import models
from tests.conformance.server import ROOT, start_server
from tests.otlp import Receiver

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


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
    by_name = {span.name: (resource, span) for resource, span in spans}
    assert set(by_name) == {"POST /v2/models/{model}/infer", "receive", "queue", "batch", "compute"}
    resource, root = by_name["POST /v2/models/{model}/infer"]
    assert resource["service.name"] == "honed-serve"
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT_ID
    attrs = {a.key: a.value for a in root.attributes}
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
