"""The runner's binary tensor extension (spoken by tritonclient), its fixed capacity (503 beyond it) and SIGTERM drain.

Requests are held by the test itself: a connection that has sent its headers but not yet its body keeps its worker
busy until the test sends the rest, so capacity and drain are checked without any timing.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from edge_runner import run_isolated, serving


def _want(source: Path, x: np.ndarray) -> np.ndarray:
    [y] = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    return np.asarray(y)


def _body(x: np.ndarray) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()


class Held:
    """An infer request whose headers are sent and whose body is held back until :meth:`release`."""

    def __init__(self, port: int, body: bytes) -> None:
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        head = f"POST /v2/models/scorer/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body[:1])

    def release(self) -> tuple[int, dict[str, Any]]:
        self.sock.sendall(self.body[1:])
        reply = http.client.HTTPResponse(self.sock)
        reply.begin()
        try:
            return reply.status, json.loads(reply.read())
        finally:
            self.sock.close()


def _call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


@pytest.fixture()
def runner(bundle: Path) -> Iterator[tuple[Any, int]]:
    with serving(bundle) as started:
        yield started


@pytest.mark.parametrize("binary_output", [True, False])
def test_tritonclient_binary_tensors_equal_in_process_onnxruntime(
    runner: tuple[Any, int], source: Path, binary_output: bool
) -> None:
    _, port = runner
    x = np.random.default_rng(5).standard_normal((3, 64)).astype(np.float32)
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        tensor = triton.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer("scorer", [tensor], outputs=[triton.InferRequestedOutput("y", binary_data=binary_output)])
        got = result.as_numpy("y")
        raw = result.get_output("y")
    finally:
        client.close()
    assert ("binary_data_size" in raw.get("parameters", {})) is binary_output
    assert got.shape == (3, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, _want(source, x), rtol=1e-5, atol=1e-6)


def test_request_level_binary_data_output_and_its_header(runner: tuple[Any, int], source: Path) -> None:
    _, port = runner
    x = np.random.default_rng(6).standard_normal((2, 64)).astype(np.float32)
    header = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 64], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST",
            "/v2/models/scorer/infer",
            body=header + x.astype("<f4").tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        reply = conn.getresponse()
        body = reply.read()
        split = int(reply.getheader("Inference-Header-Content-Length", "-1"))
    finally:
        conn.close()
    assert reply.status == 200
    doc = json.loads(body[:split])
    [out] = doc["outputs"]
    assert out["parameters"] == {"binary_data_size": 2 * 32 * 4} and "data" not in out
    np.testing.assert_allclose(
        np.frombuffer(body[split:], "<f4").reshape(2, 32), _want(source, x), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("size", "sent", "split", "message"),
    [
        (255, 255, None, "255 bytes do not hold shape [1, 64] of FP32"),
        (256, 256, 10_000, "Inference-Header-Content-Length is 10000"),
        (256, 100, None, "claims binary_data_size 256 but 100 binary bytes remain"),
        (256, 300, None, "add up to 256 bytes but 300 binary bytes follow"),
    ],
)
def test_bad_binary_requests_are_400(
    runner: tuple[Any, int], size: int, sent: int, split: int | None, message: str
) -> None:
    _, port = runner
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": size}}]}
    ).encode()
    raw = bytes(sent)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        length = str(len(header) if split is None else split)
        conn.request(
            "POST", "/v2/models/scorer/infer", body=header + raw, headers={"Inference-Header-Content-Length": length}
        )
        reply = conn.getresponse()
        doc = json.loads(reply.read())
    finally:
        conn.close()
    assert reply.status == 400 and message in doc["error"], doc


def test_over_capacity_is_503_and_the_held_requests_still_answer(bundle: Path, source: Path) -> None:
    x = np.ones((1, 64), np.float32)
    with serving(bundle, "--workers", "1", "--backlog", "1") as (_, port):
        first = Held(port, _body(x))  # taken by the one worker, which waits for its body
        second = Held(port, _body(x))  # the one backlog place
        status, doc = _call(port, "GET", "/v2/health/ready")  # accepted after both, so beyond capacity
        assert status == 503 and "at capacity (2 connections" in doc["error"]
        for held in (first, second):
            status, doc = held.release()
            assert status == 200
            np.testing.assert_allclose(
                np.array(doc["outputs"][0]["data"], np.float32), _want(source, x).ravel(), rtol=1e-5
            )
        assert _call(port, "GET", "/v2/health/ready") == (200, {"ready": True})  # capacity is given back


def test_sigterm_drains_the_request_in_flight_and_refuses_new_ones(bundle: Path, source: Path) -> None:
    x = np.full((1, 64), 0.5, np.float32)
    with serving(bundle, "--workers", "2") as (process, port):
        held = Held(port, _body(x))
        assert _call(port, "GET", "/v2/health/ready")[0] == 200  # accepted after the held one: it is in flight
        process.send_signal(signal.SIGTERM)
        for _ in range(6000):  # until the listening socket is closed (the accept loop polls twice a second)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=60).close()
            except ConnectionRefusedError:
                break
            except ConnectionResetError:  # taken into the backlog as the listening socket closed
                pass
            time.sleep(0.01)
        else:
            pytest.fail("the server kept accepting connections after SIGTERM")
        assert process.poll() is None  # still finishing the held request
        status, doc = held.release()
        assert status == 200
        np.testing.assert_allclose(np.array(doc["outputs"][0]["data"], np.float32), _want(source, x).ravel(), rtol=1e-5)
        assert process.wait(timeout=60) == 0


@pytest.mark.parametrize("flags", [["--workers", "0"], ["--backlog", "-1"]])
def test_bad_capacity_flags_are_one_line_exit_2(bundle: Path, flags: list[str]) -> None:
    done = run_isolated(bundle, "serve", "--port", "0", *flags)
    assert done.returncode == 2 and done.stderr.strip() == "bad input: --workers must be >= 1 and --backlog >= 0"
