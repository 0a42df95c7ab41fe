"""Live figures end to end: a real ``honed serve`` under a bounded load, scraped every second by a real Prometheus
that also holds six backfilled hours of two models (one steady, one with a step in load); the reader, ``honed
plan --prometheus``, the forecast server and ``honed plan anomalies`` read it all back through PromQL."""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from honed.cli.main import run
from honed.deploy.forecast_server import ForecastService, make_server
from honed.errors import Unavailable
from honed.plan.document import DECLARED, OBSERVED, read_plan
from honed.plan.live import live_plan
from honed.plan.prometheus import PrometheusReader
from honed.serve.contract import REQUEST_DURATION, REQUESTS, SUCCESS
from tests.conformance import models
from tests.conformance.server import RunningServer, start_server
from tests.plan.helpers import bench_doc, bench_row, write_json, write_yaml
from tests.plan.prometheus_server import RunningPrometheus, backfill, free_port, start_prometheus

HISTORY_S = 6 * 3600
STEP_AT_S = 4 * 3600
"""The backfilled step in load comes four hours into the six."""
LEVEL = 10.0
REQUESTS_DRIVEN = 160
RATE_DRIVEN = 16.0


def history(end: float) -> str:
    """OpenMetrics text: six hours, a sample a minute, of models ``steady`` and ``stepped`` (3x from hour 4).

    Load noise is bounded (+-5%, seeded), every request answered within (2, 4] ms and none failed.
    """
    rng = random.Random(7)
    start = int(end) - HISTORY_S
    counter, hist = REQUESTS.name.removesuffix("_total"), REQUEST_DURATION.name
    lines = {"counter": [f"# TYPE {counter} counter"], "hist": [f"# TYPE {hist} histogram"]}
    for model in ("steady", "stepped"):
        total = 0
        labels = f'instance="backfill",job="honed",model="{model}",version="1"'
        for t in range(start, int(end), 60):
            level = LEVEL * (3.0 if model == "stepped" and t - start >= STEP_AT_S else 1.0)
            total += round(60 * level * (1 + rng.uniform(-0.05, 0.05)))
            lines["counter"].append(f'{REQUESTS.name}{{{labels},outcome="{SUCCESS}"}} {total} {t}')
            lines["counter"].append(f'{REQUESTS.name}{{{labels},outcome="error"}} 0 {t}')
            for le, count in (("0.002", 0), ("0.004", total), ("+Inf", total)):
                lines["hist"].append(f'{hist}_bucket{{{labels},le="{le}"}} {count} {t}')
            lines["hist"].append(f"{hist}_count{{{labels}}} {total} {t}")
            lines["hist"].append(f"{hist}_sum{{{labels}}} {total * 0.003:.3f} {t}")
    return "\n".join([*lines["counter"], *lines["hist"], "# EOF", ""])


@dataclass
class Fleet:
    prometheus: RunningPrometheus
    server: RunningServer
    work: Path
    load_start: float
    load_end: float
    driven_rps: float
    backfill_end: float


def drive(base: str, count: int, rate: float) -> tuple[float, float, float]:
    """Send ``count`` requests at about ``rate``/s from one client thread; (start, end) wall clock and the
    achieved rate (monotonic)."""
    body = {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}
    result: dict[str, float] = {}

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            result["start"], first = time.time(), time.monotonic()
            for i in range(count):
                delay = first + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                assert http.post(f"{base}/v2/models/scorer/infer", json=body).status_code == 200
            result["end"], last = time.time(), time.monotonic()
            result["rate"] = (count - 1) / (last - first)

    thread = threading.Thread(target=client)
    thread.start()
    thread.join(120)
    return result["start"], result["end"], result["rate"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("live")
    models.mlp(work / "repo" / "scorer" / "model.onnx")
    end = time.time() - 60
    data = work / "data"
    data.mkdir()
    backfill(history(end), data, work)
    server = start_server([str(work / "repo" / "scorer"), "--instances", "1", "--threads", "1"], work / "serve.log")
    try:
        prometheus = start_prometheus(work, [server.http_url], data)
        try:
            # Until the server has been scraped once, so the load's series starts with the load.
            prometheus.wait_for("sum(up)", 1)
            start, stop, rate = drive(server.base, REQUESTS_DRIVEN, RATE_DRIVEN)
            # Until a scrape after the last request has landed.
            prometheus.wait_for(f'sum({REQUESTS.name}{{model="scorer"}})', REQUESTS_DRIVEN)
            yield Fleet(prometheus, server, work, start, stop, rate, end)
        finally:
            prometheus.stop()
    finally:
        server.stop()


def test_the_reader_reads_back_the_rate_it_was_driven_with(fleet: Fleet) -> None:
    reader = PrometheusReader(fleet.prometheus.url, step_s=1)
    since = time.time() - fleet.load_start + 5
    (series,) = reader.request_rates(since, model="scorer")
    assert (series.model, series.version) == ("scorer", "1")
    # Samples whose whole rate() window lies inside the load.
    inside = [
        v for t, v in zip(series.times, series.values, strict=True) if fleet.load_start + 5 <= t <= fleet.load_end
    ]
    assert inside, series
    assert statistics.median(inside) == pytest.approx(fleet.driven_rps, rel=0.4)
    (p99,) = reader.latency_quantiles(0.99, since, model="scorer")
    assert p99.values and all(0 < v < 10 for v in p99.values)
    cpu = reader.cpu_per_replica(since, model="scorer")
    assert [s.labels["instance"] for s in cpu] == [fleet.server.http_url]
    assert "version" not in cpu[0].labels  # the process collector's CPU, per replica, not the per-version fallback
    assert max(cpu[0].values) > 0
    # Nothing failed, and the error query says so.
    assert all(v == 0 for s in reader.error_rates(since, model="scorer") for v in s.values)
    # A query Prometheus refuses is a domain error quoting its answer.
    with pytest.raises(Unavailable, match=r"refused 'sum\(': .*parse error"):
        reader.query("sum(")


def plan_inputs(work: Path, name: str, **deployment: Any) -> tuple[Path, Path]:
    fleet_file = write_yaml(
        work / f"{name}-fleet.yaml",
        {"pools": [{"name": "cpu", "count": 4, "cpu": 16, "memory_gb": 64, "cost_per_hour": 0.5}]},
    )
    # A profile far slower than this machine: production contradicts its p99.
    profile = write_json(
        work / f"{name}-bench.json",
        bench_doc([bench_row(1, 1, 400.0, 50.0)], model_path=str(work / "repo" / "scorer" / "model.onnx")),
    )
    spec = {
        "name": name,
        "profile": str(profile),
        "peak_rps": 2,
        "slo_p99_ms": 1000,
        "model_load_s": 0.5,
        **deployment,
    }
    return fleet_file, write_yaml(work / f"{name}-deployments.yaml", {"deployments": [spec]})


def test_plan_with_prometheus_records_observed_figures_and_flags_the_profile(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_file, deployments = plan_inputs(fleet.work, "scorer")
    out = fleet.work / "scorer-plan.json"
    since = f"{round(time.time() - fleet.load_start + 5)}s"
    argv = ["plan", "--fleet", str(fleet_file), "--deployments", str(deployments), "--out", str(out)]
    assert run([*argv, "--prometheus", fleet.prometheus.url, "--since", since, "--step", "1s"]) == 0
    (placement,) = read_plan(out).placements
    live = placement.live
    assert live is not None and live.prometheus == fleet.prometheus.url
    peak = live.figure("peak_rps")
    assert peak is not None and peak.source == OBSERVED and peak.measured == 2
    assert peak.value == pytest.approx(fleet.driven_rps, rel=0.5)
    assert placement.peak_rps == peak.value  # sized for what production showed
    p99 = live.figure("p99_ms")
    assert p99 is not None and p99.source == OBSERVED and p99.measured == pytest.approx(520.0)
    assert p99.observed is not None and p99.observed < p99.measured / 2 and p99.contradicts
    assert live.contradicted == ("p99_ms",)
    assert any(r.startswith("production contradicts the profile: p99_ms") for r in placement.reasons)
    cpu = live.figure("cpu_per_replica")
    assert cpu is not None and cpu.source == OBSERVED and cpu.observed is not None and cpu.observed > 0
    assert live.cpu_metric == "process_cpu_seconds_total"
    # The same files without --prometheus: nothing observed, the declared peak.
    capsys.readouterr()
    assert run(argv) == 0
    (plain,) = read_plan(out).placements
    assert plain.live is None and plain.peak_rps == 2
    assert DECLARED != OBSERVED


def test_the_forecast_server_answers_from_prometheus_history(fleet: Fleet) -> None:
    fleet_file, deployments = plan_inputs(fleet.work, "steady", autoscaling={"policy": "predictive", "season_s": 3600})
    reader = PrometheusReader(fleet.prometheus.url, step_s=60)
    plan = live_plan(fleet_file, deployments, reader, since_s=HISTORY_S + 600)
    (placement,) = plan.placements
    assert placement.live is not None and placement.live.history_points >= 300
    # The backfill ended before the query did: no sample whose rate() window runs past its end reads low.
    (steady,) = reader.request_rates(HISTORY_S + 600, model="steady")
    low = [(t - fleet.backfill_end, v) for t, v in zip(steady.times, steady.values, strict=True) if v < LEVEL * 0.9]
    assert not low and steady.times[-1] <= fleet.backfill_end, low
    assert placement.autoscaling.history is None
    # Six hours hold two one-hour seasons: the day-ahead schedule comes from the Prometheus history.
    assert placement.autoscaling.schedule is not None
    # A flat history forecasts its level.
    forecasts = [w.forecast_rps for w in placement.autoscaling.schedule]
    assert statistics.median(forecasts) == pytest.approx(LEVEL, rel=0.3), forecasts
    assert all(f == pytest.approx(LEVEL, rel=0.3) for f in forecasts), forecasts
    # No --prometheus: the URL the plan recorded is used.
    service = ForecastService.from_plan(plan, since_s=HISTORY_S + 600)
    assert service.prometheus is not None and service.prometheus.url == fleet.prometheus.url
    server = make_server(service, "127.0.0.1", 0, token="live-forecast-token")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        body = httpx.get(
            f"http://127.0.0.1:{server.server_address[1]}/forecast/steady",
            headers={"Authorization": "Bearer live-forecast-token"},
            timeout=30,
        ).json()
    finally:
        server.shutdown()
        server.server_close()
    assert body["deployment"] == "steady" and body["replicas"] >= 1
    assert body["history"] == f"prometheus {fleet.prometheus.url}"
    assert body["forecast"] is not None and body["forecast"]["level_rps"] == pytest.approx(LEVEL, rel=0.3)
    assert body["history_end"] == pytest.approx(fleet.backfill_end, abs=600)


def test_anomalies_flag_the_injected_step_and_not_the_steady_load(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    # The window ends with the backfilled history.
    argv = ["plan", "anomalies", "--prometheus", fleet.prometheus.url, "--since", f"{HISTORY_S - 600}s"]
    argv += ["--until", f"{fleet.backfill_end:.0f}"]
    assert run([*argv, "--step", "1m", "--json", "-m", "stepped", "-m", "steady"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "request_rate steady/1" in report["checked"] and "p99_ms stepped/1" in report["checked"]
    found = report["anomalies"]
    assert found, report
    assert {(a["series"], a["model"]) for a in found} == {("request_rate", "stepped")}, found
    first = found[0]
    step_at = fleet.backfill_end - HISTORY_S + STEP_AT_S
    assert abs(first["start"] - step_at) <= 300
    assert first["value"] > first["baseline"] * 1.5 and first["modified_z"] > 3.5
    # The table form: one row per anomaly, and the count of series judged.
    assert run([*argv, "--step", "1m", "-m", "stepped"]) == 0
    assert f"{len(found)} {'anomaly' if len(found) == 1 else 'anomalies'} in 3 series" in capsys.readouterr().out


def test_unreachable_or_wrong_prometheus_is_one_line_and_exit_2(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    nobody = f"http://127.0.0.1:{free_port()}"
    assert run(["plan", "anomalies", "--prometheus", nobody, "--since", "1h"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreachable" in err and nobody in err
    # A server that is not Prometheus (honed serve itself) answers no query.
    assert run(["plan", "anomalies", "--prometheus", fleet.server.base, "--since", "1h"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Prometheus" in err
    fleet_file, deployments = plan_inputs(fleet.work, "scorer")
    argv = ["plan", "--fleet", str(fleet_file), "--deployments", str(deployments), "--out", str(fleet.work / "x.json")]
    assert run([*argv, "--prometheus", nobody]) == 2 and not (fleet.work / "x.json").exists()
    assert run([*argv, "--prometheus", fleet.prometheus.url, "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err
    # The forecast server reads its live history at start: an unreachable Prometheus fails there.
    fleet_file, predictive = plan_inputs(fleet.work, "scorer", autoscaling={"policy": "predictive"})
    plan_path = str(fleet.work / "predictive.json")
    argv = ["plan", "--fleet", str(fleet_file), "--deployments", str(predictive), "--out", plan_path]
    assert run([*argv, "--prometheus", fleet.prometheus.url, "--since", "1m", "--step", "1s"]) == 0
    assert "no day-ahead schedule yet" in capsys.readouterr().out
    server_argv = ["plan", "forecast-server", "--plan", plan_path, "--prometheus", nobody, "--port", "0"]
    assert run([*server_argv, "--insecure-no-auth"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreachable" in err
