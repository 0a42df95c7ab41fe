"""python -m honed_edge serve over a real socket: V2 health, metadata and infer, 400/404, SIGTERM stops it."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from edge_runner import serving


@pytest.fixture(scope="module")
def server(bundle: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    with serving(bundle) as started:
        yield started


def _call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def _infer_body(x: np.ndarray, shape: list[int] | None = None, **changes: Any) -> bytes:
    tensor = {"name": "x", "shape": shape or list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    return json.dumps({"id": "r1", "inputs": [{**tensor, **changes}]}).encode()


def test_health_and_metadata(server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = server
    assert _call(port, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert _call(port, "GET", "/v2/health/live") == (200, {"live": True})
    status, meta = _call(port, "GET", "/v2/models/scorer")
    assert status == 200 and meta["name"] == "scorer"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 32]}]
    assert _call(port, "GET", "/v2/models/scorer/ready") == (200, {"name": "scorer", "ready": True})


def test_infer_equals_in_process_onnxruntime(server: tuple[subprocess.Popen[str], int], source: Path) -> None:
    _, port = server
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    status, reply = _call(port, "POST", "/v2/models/scorer/infer", _infer_body(x))
    assert status == 200, reply
    assert reply["id"] == "r1" and reply["model_name"] == "scorer"
    [out] = reply["outputs"]
    [want] = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert out["shape"] == [4, 32] and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(out["data"], dtype=np.float32).reshape(4, 32), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (_infer_body(np.zeros((1, 63), np.float32)), 400, "input 'x' must have shape ?x64, got 1x63"),
        (_infer_body(np.zeros((1, 64), np.float32), shape=[2, 64]), 400, "64 values do not fill shape [2, 64]"),
        (_infer_body(np.zeros((1, 64), np.float32), datatype="FP64"), 400, "input 'x' must be float32, got float64"),
        (_infer_body(np.zeros((1, 64), np.float32), name="z"), 400, "missing x; unknown z"),
        (_infer_body(np.zeros((1, 64), np.float32), datatype="FP99"), 400, "datatype 'FP99' is not one of"),
        (b"{not json", 400, "the body is not JSON"),
        (b'{"inputs": []}', 400, 'non-empty "inputs" list'),
    ],
)
def test_bad_requests_are_400_with_the_reason(
    server: tuple[subprocess.Popen[str], int], body: bytes, status: int, message: str
) -> None:
    _, port = server
    got, reply = _call(port, "POST", "/v2/models/scorer/infer", body)
    assert got == status and message in reply["error"], reply


def test_unknown_model_and_path_are_404(server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = server
    body = _infer_body(np.zeros((1, 64), np.float32))
    status, reply = _call(port, "POST", "/v2/models/other/infer", body)
    assert status == 404 and "unknown model 'other'" in reply["error"]
    assert _call(port, "GET", "/v2/models/other")[0] == 404
    assert _call(port, "GET", "/v1/models")[0] == 404
    assert _call(port, "POST", "/v2/models/scorer/predict", body)[0] == 404


def test_a_body_over_the_limit_is_413_before_it_is_read(server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("POST", "/v2/models/scorer/infer")
        conn.putheader("Content-Length", str((64 << 20) + 1))
        conn.endheaders()
        reply = conn.getresponse()
        assert reply.status == 413 and "at most" in json.loads(reply.read())["error"]
    finally:
        conn.close()


def test_sigterm_stops_the_server(server: tuple[subprocess.Popen[str], int]) -> None:
    """Last in the module: it stops the server the other tests share."""
    process, port = server
    assert _call(port, "GET", "/v2/health/ready")[0] == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
