"""Lifecycle against a real server: graceful drain on SIGTERM, a full queue answering 429, and a client that gives
up taking its request off the queue. Uses a deliberately slow model so requests are really in flight."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conformance import models
from tests.conformance.server import RunningServer, start_server

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}


@pytest.fixture(scope="module")
def slow_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    models.slow(root / "slow" / "1" / "model.onnx", layers=4)
    (root / "slow" / "config.yaml").write_text("warmup: false\nbatching:\n  max_batch_size: 1\n  max_queue_size: 2\n")
    return root


@pytest.fixture(scope="module")
def server(slow_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One instance, one row per run, room for two queued requests."""
    running = start_server(["--repository", str(slow_repo)], tmp_path_factory.mktemp("log") / "server.log")
    yield running
    assert running.stop() == 0, running.output()


def _post(base: str) -> httpx.Response:
    return httpx.post(f"{base}/v2/models/slow/infer", json=BODY, timeout=60)


def _wait_for(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _metric(server: RunningServer, prefix: str) -> float:
    text = httpx.get(f"{server.base}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(prefix) and 'model="slow"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _inflight(server: RunningServer) -> float:
    return _metric(server, "honed_inflight_requests{")


def _cancelled(server: RunningServer) -> float:
    return _metric(server, 'honed_requests_total{model="slow",outcome="cancelled"')


def test_sigterm_drains_in_flight_requests_and_turns_readiness_off(slow_repo: Path, tmp_path: Path) -> None:
    server = start_server(["--repository", str(slow_repo)], tmp_path / "server.log")
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(_post, server.base) for _ in range(3)]
            assert _wait_for(lambda: _inflight(server) >= 2), server.output()
            server.proc.send_signal(signal.SIGTERM)
            with httpx.Client(base_url=server.base, timeout=5) as probe:
                assert _wait_for(lambda: probe.get("/v2/health/ready").status_code == 503), server.output()
                assert probe.get("/v2/health/live").status_code == 200
            answers = [f.result(timeout=60) for f in futures]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert server.proc.wait(60) == 0, server.output()
    finally:
        server.stop()


def test_full_queue_answers_429_with_retry_after_and_keeps_serving(server: RunningServer) -> None:
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _post(server.base), range(12)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 429}, [a.text for a in answers]
    full = [a for a in answers if a.status_code == 429]
    assert full, "twelve concurrent requests against a queue of two should overflow it"
    assert int(full[0].headers["retry-after"]) >= 1
    assert "queue" in full[0].json()["error"]
    assert _post(server.base).status_code == 200


def test_a_client_that_gives_up_is_taken_off_the_queue(server: RunningServer) -> None:
    before = _cancelled(server)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(_post, server.base)  # occupies the only instance
        assert _wait_for(lambda: _inflight(server) >= 1)
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{server.base}/v2/models/slow/infer", json=BODY, timeout=0.05)
        assert running.result(timeout=60).status_code == 200
    assert _wait_for(lambda: _cancelled(server) == before + 3)


def test_timeout_parameter_ends_a_queued_request_with_504(server: RunningServer) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # One request runs and one waits, so the late one queues behind at least a whole run.
        ahead = [pool.submit(_post, server.base) for _ in range(2)]
        assert _wait_for(lambda: _inflight(server) >= 2)
        late = httpx.post(
            f"{server.base}/v2/models/slow/infer", json={**BODY, "parameters": {"timeout": 20_000}}, timeout=60
        )
        assert late.status_code == 504, late.text
        assert "error" in late.json()
        assert all(f.result(timeout=60).status_code == 200 for f in ahead)


def test_full_queue_over_grpc_is_resource_exhausted(server: RunningServer) -> None:
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    def call(_: int) -> str:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inp = grpcclient.InferInput("x", [1, 1], "FP32")
        inp.set_data_from_numpy(np.ones((1, 1), np.float32))
        try:
            client.infer("slow", [inp])
        except InferenceServerException as exc:
            return str(exc.status())
        finally:
            client.close()
        return "OK"

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(call, range(12)))
    assert set(codes) <= {"OK", "StatusCode.RESOURCE_EXHAUSTED"}, codes
    assert "StatusCode.RESOURCE_EXHAUSTED" in codes and "OK" in codes


def test_a_grpc_call_that_is_cancelled_is_taken_off_the_queue(server: RunningServer) -> None:
    import numpy as np
    import tritonclient.grpc as grpcclient

    before = _cancelled(server)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("x", [1, 1], "FP32")
    inp.set_data_from_numpy(np.ones((1, 1), np.float32))
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(_post, server.base)  # occupies the only instance
            assert _wait_for(lambda: _inflight(server) >= 1)
            call = client.async_infer("slow", [inp], callback=lambda result, error: None)
            assert _wait_for(lambda: _inflight(server) >= 2)
            call.cancel()
            assert running.result(timeout=60).status_code == 200
        assert _wait_for(lambda: _cancelled(server) == before + 1)
    finally:
        client.close()
