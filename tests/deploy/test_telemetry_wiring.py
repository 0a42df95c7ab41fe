"""honed deploy k8s --otlp-endpoint / --trace-sample / --prometheus: the serving pods trace, the forecast server
reads live load from Prometheus, and each may reach what it calls past the default deny."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from honed.deploy import DeployOptions, build
from honed.deploy.serving import ServingSecrets, Tracing
from honed.errors import InvalidArgument
from honed.plan.document import LiveFigures, Plan, write_plan
from tests.deploy.test_manifests import CORE_KINDS, plan, serving_pod, validate

__all__ = ["plan"]

OTLP = "http://otel-collector.monitoring.svc:4318"
PROM = "http://prometheus.monitoring.svc:9090"
ACCESS = ServingSecrets(access_secret="honed-access")


def forecast_objects(objects: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects["_forecast"]}


def forecast_args(objects: dict[str, list[dict[str, Any]]]) -> list[str]:
    dep = forecast_objects(objects)["Deployment/honed-forecast"]
    return list(dep["spec"]["template"]["spec"]["containers"][0]["args"])


def with_recorded_prometheus(plan: Plan, url: str) -> Plan:
    live = LiveFigures(prometheus=url, since_s=86400.0, margin=0.5, figures=())
    placements = tuple(
        dataclasses.replace(p, live=live) if p.deployment == "fraud-predictive" else p for p in plan.placements
    )
    return dataclasses.replace(plan, placements=placements)


@pytest.mark.parametrize("fmt", ["k8s", "kserve"])
def test_every_serving_pod_traces_to_the_receiver_and_may_reach_it(plan: Plan, fmt: str) -> None:
    objects = build(plan, DeployOptions(fmt=fmt, secrets=ACCESS, tracing=Tracing(OTLP, 0.01)))
    for obj in objects["fraud"]:
        if obj["kind"] in CORE_KINDS:
            validate(obj)
    if fmt == "k8s":
        args = serving_pod(objects)["spec"]["containers"][0]["args"]
    else:
        runtime = next(o for o in objects["fraud"] if o["kind"] == "ServingRuntime")
        args = runtime["spec"]["containers"][0]["args"]
    i = args.index("--otlp-endpoint")
    assert args[i : i + 4] == ["--otlp-endpoint", OTLP, "--trace-sample", "0.01"]
    egress = next(o for o in objects["fraud"] if o["metadata"]["name"] == "fraud-allow-egress")
    assert [p["port"] for p in egress["spec"]["egress"][1]["ports"]] == [4318]
    untraced = build(plan, DeployOptions(fmt=fmt, secrets=ACCESS))
    assert not any("--otlp-endpoint" in str(o) for o in untraced["fraud"])


def test_the_forecast_server_reads_the_prometheus_the_plan_recorded_or_the_one_given(plan: Plan) -> None:
    assert "--prometheus" not in forecast_args(build(plan, DeployOptions(secrets=ACCESS)))
    assert "NetworkPolicy/honed-forecast-allow-egress" not in forecast_objects(
        build(plan, DeployOptions(secrets=ACCESS))
    )
    recorded = with_recorded_prometheus(plan, PROM)
    for options, url in [
        (DeployOptions(secrets=ACCESS), PROM),
        (DeployOptions(secrets=ACCESS, prometheus="https://prom.example:8443"), "https://prom.example:8443"),
    ]:
        objects = build(recorded, options)
        args = forecast_args(objects)
        assert args[args.index("--prometheus") + 1] == url
        by_name = forecast_objects(objects)
        egress = by_name["NetworkPolicy/honed-forecast-allow-egress"]
        validate(egress)
        validate(by_name["Deployment/honed-forecast"])
        port = 9090 if url == PROM else 8443
        assert [p["port"] for p in egress["spec"]["egress"][1]["ports"]] == [port]
    given = build(plan, DeployOptions(secrets=ACCESS, prometheus=PROM))
    assert forecast_args(given)[-2:] == ["--prometheus", PROM]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: Tracing("otel:4318"), "give an http"),
        (lambda: Tracing(OTLP, 1.5), "within 0..1"),
        (lambda: DeployOptions(insecure_no_auth=True, prometheus="prometheus:9090"), "--prometheus"),
    ],
)
def test_bad_telemetry_settings_are_refused(make: Any, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        make()


def test_cli_passes_tracing_and_prometheus_and_refuses_a_sample_alone(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from honed.cli.main import run

    path = write_plan(plan, tmp_path / "plan.json")
    base = ["deploy", "k8s", "--plan", str(path), "--access-secret", "a"]
    flags = ["--otlp-endpoint", OTLP, "--trace-sample", "0.1", "--prometheus", PROM]
    assert run([*base, "--out", str(tmp_path / "m"), *flags]) == 0
    dep = next(d for d in yaml.safe_load_all((tmp_path / "m" / "fraud.yaml").read_text()) if d["kind"] == "Deployment")
    assert "0.1" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    forecast = list(yaml.safe_load_all((tmp_path / "m" / "honed-forecast.yaml").read_text()))
    dep = next(d for d in forecast if d["kind"] == "Deployment")
    assert PROM in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    capsys.readouterr()
    assert run([*base, "--out", str(tmp_path / "m2"), "--trace-sample", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--trace-sample needs --otlp-endpoint" in err and err.count("\n") == 1 and not (tmp_path / "m2").exists()
