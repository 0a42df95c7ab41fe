"""A real Prometheus (Debian's ``prometheus`` package) on a free loopback port, with backfilled history.

:func:`start_prometheus` writes a config scraping the given targets every second, starts the server on a
temporary storage folder and waits until it is ready; :func:`backfill` turns OpenMetrics text into TSDB blocks
with ``promtool tsdb create-blocks-from openmetrics`` (before the server starts, which then serves them).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def binaries() -> tuple[str, str]:
    """(prometheus, promtool), or skip the test saying how to get them."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        pytest.skip("needs Prometheus (apt-get install -y prometheus; .ci/run installs it when run as root)")
    return prometheus, promtool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningPrometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def samples(self, promql: str) -> float | None:
        """The first value of an instant query, or None when it is empty."""
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, wanted: float, timeout_s: float = 30.0) -> float:
        """Poll until the query's value reaches ``wanted`` (a scrape after the load ended); the last value."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.samples(promql)
            if value is not None and value >= wanted:
                return value
            time.sleep(0.25)
        raise AssertionError(f"Prometheus never saw {promql} >= {wanted} (last {value}):\n{self.log.read_text()}")


def backfill(openmetrics: str, data_dir: Path, work: Path) -> None:
    _, promtool = binaries()
    source = work / "history.om"
    source.write_text(openmetrics, encoding="utf-8")
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def start_prometheus(work: Path, targets: list[str], data_dir: Path | None = None) -> RunningPrometheus:
    prometheus, _ = binaries()
    data = data_dir or work / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: honed\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: [{', '.join(repr(t) for t in targets)}]\n",
        encoding="utf-8",
    )
    port = free_port()
    log = work / "prometheus.log"
    handle = open(log, "wb")  # noqa: SIM115 - the child writes to it for its whole life
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    server = RunningPrometheus(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"prometheus did not become ready:\n{log.read_text()}")
