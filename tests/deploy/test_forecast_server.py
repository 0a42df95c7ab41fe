"""The forecast server, for real: bound on 127.0.0.1, read with an HTTP client, as KEDA's metrics-api reads it."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from honed.deploy import DeployOptions, build
from honed.deploy.forecast_server import ForecastService, make_server
from honed.errors import InvalidArgument
from honed.plan.document import Plan, read_plan, write_plan
from honed.plan.planner import make_plan
from honed.plan.spec import Autoscaling, Deployment, Pool
from tests.plan.helpers import bench_doc, bench_row, write_json

TOKEN = "forecast-token-0123456789"
TIMEOUT_S = 1.0


def write_history(path: Path, hours: float, rate_at: Any) -> Path:
    """Per-minute rows of ``rate_at(minute)``; an hour-long season keeps the history (and the test) short."""
    rows = ["time_s,requests_per_s"] + [f"{m * 60},{rate_at(m):.3f}" for m in range(int(hours * 60))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def hourly_burst(minute: int) -> float:
    """50 rps, and 150 rps in minutes 0-9 of every hour (a job that runs on the hour)."""
    return 150.0 if minute % 60 < 10 else 50.0


def plan_for(tmp: Path, *names: str) -> Plan:
    """The real planner's plan, written and read back: predictive ``names`` and one reactive deployment.

    One operating point of 10 rps per replica at a 50% target; a 30 s provisioning lead (10 s model load + 20 s
    pod start); an hour-long season, learnt from three hours of ``hourly_burst``.
    """
    bench = write_json(tmp / "bench.json", bench_doc([bench_row(1, 1, 50.0, 10.0)]))
    history = write_history(tmp / "planned-history.csv", 3, hourly_burst)
    predictive = Autoscaling(
        policy="predictive", target_utilization=0.5, max_replicas=40, history=str(history), season_s=3600.0
    )
    deps = [Deployment(n, 1000.0, 150.0, profile=str(bench), model_load_s=10.0, autoscaling=predictive) for n in names]
    reactive = Autoscaling(target_utilization=0.5)
    deps.append(Deployment("reactive", 1000.0, 50.0, profile=str(bench), model_load_s=10.0, autoscaling=reactive))
    pools = [Pool("cpu", 8, 16.0, 64.0, 0.5, pod_start_s=20.0)]
    plan = make_plan(pools, deps, time_limit_s=5)
    assert {p.deployment for p in plan.placements} == {*names, "reactive"}, plan.unplaced
    return read_plan(write_plan(plan, tmp / "plan.json"))


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, ForecastService, Path]]:
    # Ends at 02:57, three minutes before the burst on the hour: beyond one provisioning lead + a reconcile.
    history = write_history(tmp_path / "scorer.csv", 3 - 2 / 60, hourly_burst)
    service = ForecastService.from_plan(plan_for(tmp_path, "scorer"), history=history)
    srv = make_server(service, "127.0.0.1", 0, token=TOKEN, timeout_s=TIMEOUT_S)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", service, history
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def get(url: str, authorization: str | None = f"Bearer {TOKEN}") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def raw_get(base: str, head: bytes) -> bytes:
    """One request with exactly these header bytes (repeated headers included); the whole answer."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_callers_without_the_token_get_401_and_probes_stay_open(server: tuple[str, ForecastService, Path]) -> None:
    base, _, _ = server
    for auth in (None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN):
        for path in ("/forecast/scorer", "/forecast", "/forecast/nope", "/elsewhere"):
            status, body = get(f"{base}{path}", auth)
            assert status == 401 and "bearer token" in body["error"], (auth, path, status)
    assert get(f"{base}/healthz", None) == (200, {"status": "ok"})
    assert get(f"{base}/forecast/scorer")[0] == 200
    # Two Authorization headers, the right one among them: refused, whichever comes first.
    for first, second in ((f"Bearer {TOKEN}", "Bearer x"), ("Bearer x", f"Bearer {TOKEN}")):
        head = f"GET /forecast/scorer HTTP/1.0\r\nAuthorization: {first}\r\nAuthorization: {second}\r\n\r\n"
        answer = raw_get(base, head.encode())
        assert answer.startswith(b"HTTP/1.0 401") and b"WWW-Authenticate: Bearer" in answer, answer[:200]


def test_a_slow_client_is_cut_off_and_does_not_hold_the_server(server: tuple[str, ForecastService, Path]) -> None:
    """A client trickling its request head one byte at a time (each byte well within the per-read timeout) is
    disconnected once its head deadline passes, while other clients are served meanwhile."""
    base, _, _ = server
    url = urlsplit(base)
    slow = socket.create_connection((url.hostname, url.port), timeout=30)
    head = f"GET /forecast/scorer HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\nX-Pad: {'a' * 400}\r\n\r\n".encode()
    closed_after = None
    try:
        slow.sendall(head[:10])
        assert get(f"{base}/forecast/scorer")[0] == 200  # served while the slow one is connected
        stop = threading.Event()
        for sent in range(10, len(head)):
            if stop.wait(TIMEOUT_S / 10):
                break
            try:
                slow.sendall(head[sent : sent + 1])
            except OSError:  # reset or broken pipe: the server closed it
                closed_after = sent
                break
    finally:
        slow.close()
    # 400+ bytes at a tenth of the timeout each would take 40+ timeouts to finish: the deadline cut it long before.
    assert closed_after is not None and closed_after < len(head) - 1
    assert get(f"{base}/forecast/scorer")[0] == 200


def test_serves_the_predicted_replica_count_for_the_metrics_api_trigger(
    server: tuple[str, ForecastService, Path],
) -> None:
    base, _, _ = server
    status, body = get(f"{base}/forecast/scorer")
    assert status == 200
    # KEDA's valueLocation "replicas" must find a number there.
    assert isinstance(body["replicas"], int) and 1 <= body["replicas"] <= 40
    fc = body["forecast"]
    assert fc["horizon_s"] == 45.0 and fc["provisioned_rps"] == pytest.approx(fc["forecast_rps"] + fc["margin_rps"])
    # 50 rps at 5 rps per replica (10 rps x 50% target) is 10 replicas; the floor provisions the forecast.
    assert body["reactive_replicas"] == 10
    assert body["history_end"] == (3 * 60 - 3) * 60
    assert get(f"{base}/healthz") == (200, {"status": "ok"})
    status, listing = get(f"{base}/forecast")
    assert status == 200 and set(listing["deployments"]) == {"scorer"}


def test_the_forecast_follows_the_history_file(server: tuple[str, ForecastService, Path]) -> None:
    base, _, history = server
    _, before = get(f"{base}/forecast/scorer")
    # Two more minutes of history (to 02:59): now the burst on the hour is inside the provisioning lead.
    write_history(history, 3, hourly_burst)
    _, after = get(f"{base}/forecast/scorer")
    assert after["history_end"] == before["history_end"] + 120
    assert after["forecast"]["forecast_rps"] > 100 > before["forecast"]["forecast_rps"]
    assert after["replicas"] > before["replicas"]


def test_unknown_deployment_and_vanished_history_are_json_errors(server: tuple[str, ForecastService, Path]) -> None:
    base, _, history = server
    status, body = get(f"{base}/forecast/reactive")
    assert status == 404 and "reactive" in body["error"]
    assert get(f"{base}/nope")[0] == 404
    history.unlink()
    status, body = get(f"{base}/forecast/scorer")
    assert status == 503 and "not found" in body["error"]


def test_bad_setup_fails_at_start(tmp_path: Path) -> None:
    two = plan_for(tmp_path, "a", "b")
    with pytest.raises(InvalidArgument, match="no predictive placement"):
        ForecastService.from_plan(two.only([two.placement("reactive")]))
    with pytest.raises(InvalidArgument, match="one file for one deployment"):
        ForecastService.from_plan(two, history=tmp_path / "x.csv")
    with pytest.raises(InvalidArgument, match="not found"):
        ForecastService.from_plan(two, history_dir=tmp_path)
    bad = tmp_path / "a.csv"
    bad.write_text("time_s,requests_per_s\n0,1\n60,-5\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match=">= 0"):
        ForecastService.from_plan(two, history_dir=tmp_path, deployments=["a"])


def test_the_forecast_servers_configmap_plan_is_a_plan_it_serves(tmp_path: Path) -> None:
    """``honed deploy k8s`` puts the namespace's predictive placements in a ConfigMap; the server reads that file."""
    plan = plan_for(tmp_path, "scorer")
    open_pods = DeployOptions(insecure_no_auth=True)
    (config,) = [o for o in build(plan, open_pods)["_forecast"] if o["kind"] == "ConfigMap"]
    mounted = tmp_path / "etc" / "plan.json"
    mounted.parent.mkdir()
    mounted.write_text(config["data"]["plan.json"], encoding="utf-8")
    served = read_plan(mounted)
    assert served.names() == ["scorer"] and served.placement("scorer") == plan.placement("scorer")
    history_dir = tmp_path / "history"
    history_dir.mkdir()
    write_history(history_dir / "scorer.csv", 3 - 2 / 60, hourly_burst)
    service = ForecastService.from_plan(served, history_dir=history_dir)
    assert service.forecast("scorer")["reactive_replicas"] == 10


def test_cli_forecast_server_serves_until_stopped(tmp_path: Path) -> None:
    """``honed plan forecast-server`` as a user runs it: a real process on a free port, read over HTTP."""
    import os
    import subprocess
    import sys

    plan_path = tmp_path / "plan.json"
    plan = plan_for(tmp_path, "scorer")
    history = write_history(tmp_path / "scorer.csv", 2, hourly_burst)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "honed", "plan", "forecast-server", "--plan", str(plan_path)]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    with subprocess.Popen(
        [*cmd, "--history", str(history), "--port", "0", "--token-file", str(token_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().decode().strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/forecast/scorer"), url
            status, body = get(url)
            assert status == 200 and body["deployment"] == "scorer" and body["replicas"] >= 1
            assert get(url, None)[0] == 401
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    # No token and no --insecure-no-auth: refused at start; both: refused; an empty token file: refused.
    args = [*cmd, "--history", str(history), "--port", "0"]
    clean = {k: v for k, v in env.items() if k != "HONED_FORECAST_TOKEN"}
    done = subprocess.run(args, capture_output=True, env=clean, timeout=120)
    assert done.returncode == 2 and b"--insecure-no-auth" in done.stderr and b"Traceback" not in done.stderr
    done = subprocess.run(
        [*args, "--insecure-no-auth"], capture_output=True, env={**clean, "HONED_FORECAST_TOKEN": "t"}
    )
    assert done.returncode == 2 and b"not both" in done.stderr
    token_file.write_text("\n", encoding="utf-8")
    done = subprocess.run([*args, "--token-file", str(token_file)], capture_output=True, env=clean, timeout=120)
    assert done.returncode == 2 and b"is empty" in done.stderr
    # Open on purpose: it says so on stderr and answers without a token.
    with subprocess.Popen(
        [*args, "--insecure-no-auth"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            url = proc.stdout.readline().decode().strip()
            assert get(url, None)[0] == 200
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        assert b"answers every caller without a token" in proc.stderr.read()
    # Bad input: a plan without predictive placements is a one-line error and exit 2.
    write_plan(plan.only([plan.placement("reactive")]), plan_path)
    done = subprocess.run([*cmd, "--insecure-no-auth"], capture_output=True, env=clean, timeout=120)
    assert done.returncode == 2 and b"no predictive placement" in done.stderr
    assert b"Traceback" not in done.stderr
