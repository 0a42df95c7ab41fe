"""Start ``honed serve`` as a real subprocess on free loopback ports, and stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening: (?:HTTP on ([\d.]+):(\d+))?(?:, )?(?:gRPC on ([\d.]+):(\d+))?")


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    log: Path
    http_port: int
    grpc_port: int
    scheme: str = "http"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(
    args: list[str], log: Path, *, timeout: float = 60.0, wait_ready: bool = True, tls: dict[str, Any] | None = None
) -> RunningServer:
    """Run ``python -m honed serve ARGS --http 127.0.0.1:0 --grpc 127.0.0.1:0`` and wait until it is ready.

    ``tls``: the server speaks HTTPS; these httpx client options (``verify``, ``cert``) probe its readiness.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "honed", "serve", *args, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"]
    handle = open(log, "wb")  # noqa: SIM115 - the child writes to it for its whole life
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    handle.close()
    deadline = time.monotonic() + timeout
    ports: tuple[int, int] | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"honed serve exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match and match.group(2) and match.group(4):
            ports = (int(match.group(2)), int(match.group(4)))
            break
        time.sleep(0.05)
    if ports is None:
        proc.kill()
        raise RuntimeError(f"honed serve did not start listening:\n{log.read_text(errors='replace')}")
    server = RunningServer(proc, log, *ports, scheme="https" if tls is not None else "http")
    while wait_ready and time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.base}/v2/health/ready", timeout=2, **(tls or {})).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if wait_ready:
        server.stop()
        raise RuntimeError(f"honed serve did not become ready:\n{server.output()}")
    return server
