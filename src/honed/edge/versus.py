"""The runner's p50 against ``honed serve`` on the same model, in one run (``cost.json``'s ``versus_serve``).

Both servers start as subprocesses on free loopback ports: ``python -m honed_edge serve`` in the bundle, and
``honed serve`` on a repository holding the same model (ONNX, or the IR's two files) under the same name, with the
bundle's runtime config (backend, precision, threads) in its ``config.json``, without batching (one request, one
run, as the runner does) and without gRPC. Each gets the bundle's sample as the same V2 JSON body over one kept-alive
connection; after warm-up requests, the requests alternate between the two so that whatever else the machine is
doing falls on both alike. The figures are client-side round trips.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from honed.edge.runner_files import runner_command
from honed.errors import BackendError, InvalidArgument
from honed.fields import Document
from honed.model.artifact import IR_FILE, ONNX_FILE, copy_artifact, is_ir
from honed.runtime import RuntimeConfig
from honed.serve.protocol.datatypes import from_numpy

_START_TIMEOUT_S = 120.0
_REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ServeComparison(Document):
    requests: int
    """Requests timed on each server (after ``warmup`` each), alternating between them."""
    warmup: int
    runner_p50_ms: float
    serve_p50_ms: float
    ratio: float
    """``runner_p50_ms / serve_p50_ms``: below 1 the runner answers faster."""


def infer_body(feeds: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    inputs = [
        {"name": n, "shape": list(a.shape), "datatype": from_numpy(a.dtype), "data": a.reshape(-1).tolist()}
        for n, a in feeds.items()
    ]
    return json.dumps({"inputs": inputs}).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _process(command: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _failed(what: str, process: subprocess.Popen[str]) -> BackendError:
    process.kill()
    _, err = process.communicate()
    lines = [line for line in (err or "").splitlines() if line.strip()]
    return BackendError(f"{what} did not start: {lines[-1] if lines else f'exit {process.returncode}'}")


def _start_runner(bundle: Path, stack: ExitStack) -> int:
    process = stack.enter_context(_process(runner_command("serve", "--port", "0"), bundle))
    assert process.stdout is not None
    found = re.match(r"listening on http://[^:]+:(\d+) ", process.stdout.readline())
    if found is None:
        raise _failed("the bundle's runner", process)
    return int(found.group(1))


def _serve_repository(model: Path, name: str, runtime: RuntimeConfig, folder: Path) -> Path:
    """``folder`` as a one-model repository for ``honed serve``: ``name/1/`` holding the model, and ``name/config.json``
    with ``runtime``."""
    version = folder / name / "1"
    version.mkdir(parents=True)
    copy_artifact(model, version / (IR_FILE if is_ir(model) else ONNX_FILE))
    (folder / name / "config.json").write_text(json.dumps({"runtime": runtime.to_dict()}), encoding="utf-8")
    return folder


def _serve_command(repository: Path, port: int, runtime: RuntimeConfig) -> list[str]:
    """``honed serve`` on ``repository``: HTTP on ``port`` only, no batching, the runtime's threads."""
    command = [sys.executable, "-m", "honed", "serve", "--repository", str(repository)]
    command += ["--http", f"127.0.0.1:{port}", "--grpc", "off", "--no-batching"]
    if runtime.threads > 0:
        command += ["--threads", str(runtime.threads)]
    return command


def start_honed_serve(model: Path, name: str, runtime: RuntimeConfig, work: Path, stack: ExitStack) -> int:
    """``honed serve`` on ``model`` (served as ``name`` with ``runtime``, from a repository made in ``work``), ready;
    returns its HTTP port. ``stack`` stops it (SIGTERM) when closed."""
    port = _free_port()
    command = _serve_command(_serve_repository(model, name, runtime, work / "repository"), port, runtime)
    process = stack.enter_context(_process(command, work))
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _failed("honed serve", process)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/v2/models/{name}/ready")
            if conn.getresponse().status == 200:
                conn.close()
                return port
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise _failed("honed serve (not ready in time)", process)


def _timed(conn: http.client.HTTPConnection, path: str, body: bytes) -> float:
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    payload = reply.read()
    elapsed = (time.perf_counter() - started) * 1000
    if reply.status != 200:
        raise BackendError(f"POST {path} answered {reply.status}: {payload[:200].decode(errors='replace')}")
    return elapsed


def compare_with_serve(
    bundle: Path,
    model: Path,
    name: str,
    feeds: Mapping[str, np.ndarray[Any, Any]],
    runtime: RuntimeConfig,
    *,
    requests: int = 100,
    warmup: int = 10,
) -> ServeComparison:
    """Start both servers, send ``warmup`` then ``requests`` alternating requests to each, and compare p50s;
    honed serve runs the model with ``runtime``, the bundle's session (threads, precision) as honed's config."""
    if requests < 1 or warmup < 0:
        raise InvalidArgument("the comparison needs at least 1 request and >= 0 warm-up requests")
    body = infer_body(feeds)
    path = f"/v2/models/{name}/infer"
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="honed-edge-versus-") as tmp:
        ports = {
            "runner": _start_runner(bundle, stack),
            "serve": start_honed_serve(model, name, runtime, Path(tmp), stack),
        }
        conns = {k: http.client.HTTPConnection("127.0.0.1", p, timeout=_REQUEST_TIMEOUT_S) for k, p in ports.items()}
        for conn in conns.values():
            stack.callback(conn.close)
        times: dict[str, list[float]] = {k: [] for k in conns}
        for i in range(warmup + requests):
            for kind, conn in conns.items() if i % 2 == 0 else reversed(conns.items()):
                elapsed = _timed(conn, path, body)
                if i >= warmup:
                    times[kind].append(elapsed)
    runner, serve = statistics.median(times["runner"]), statistics.median(times["serve"])
    return ServeComparison(requests, warmup, runner, serve, runner / serve)
