"""Every generated manifest validates (kubernetes-validate, strict, pinned version); KEDA/KServe checked honestly."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer.main
import yaml

from honed.deploy import DeployOptions, build, write
from honed.deploy.dockerfiles import dockerfile
from honed.deploy.grafana import dashboard
from honed.deploy.k8s import IMAGE_UID, JURISDICTION_LABEL
from honed.deploy.serving import ServingSecrets
from honed.errors import InvalidArgument
from honed.plan.document import Plan, read_plan, write_plan
from honed.plan.planner import make_plan
from honed.plan.spec import Autoscaling, Deployment, Pool
from honed.serve import contract
from tests.plan.helpers import GPU_PROFILE, bench_doc, write_json

K8S_VERSION = "1.33.0"
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "Service",
    "ServiceAccount",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
}


SECURE = DeployOptions(secrets=ServingSecrets(access_secret="honed-access"))
"""What ``honed deploy k8s --access-secret honed-access`` builds."""
VARIANTS = {
    "k8s-access": SECURE,
    "k8s-access-tls": DeployOptions(secrets=ServingSecrets(access_secret="honed-access", tls_secret="honed-tls")),
    "k8s-insecure": DeployOptions(insecure_no_auth=True),
    "kserve-insecure": DeployOptions(fmt="kserve", insecure_no_auth=True),
    "kserve-access-tls": DeployOptions(
        fmt="kserve", secrets=ServingSecrets(access_secret="honed-access", tls_secret="honed-tls")
    ),
}


TRIGGER_AUTHENTICATION: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {k: {"type": "string", "minLength": 1} for k in ("parameter", "name", "key")},
                    },
                },
            },
        },
    },
}
"""The part of KEDA's TriggerAuthentication CRD schema honed uses (spec.secretTargetRef), strictly."""


def so_namespace(objects: dict[str, list[dict[str, Any]]]) -> str:
    so = next(o for o in objects["fraud-predictive"] if o["kind"] == "ScaledObject")
    return str(so["metadata"]["namespace"])


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def serving_pod(objects: dict[str, list[dict[str, Any]]], name: str = "fraud") -> dict[str, Any]:
    dep = next(o for o in objects[name] if o["kind"] == "Deployment")
    return dep["spec"]["template"]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """The real planner's plan, written to plan.json and read back: what ``honed deploy k8s`` gets."""
    tmp = tmp_path_factory.mktemp("plan")
    bench = write_json(tmp / "bench.json", bench_doc())
    # Three days of load, busy 09:00-17:00 UTC: the history the predictive deployment forecasts from.
    history = tmp / "history.csv"
    rows = [f"{i * 300},{100.0 + 900.0 * (9 <= (i * 300 % 86400) / 3600 < 17)}" for i in range(3 * 288)]
    history.write_text("time,requests_per_s\n" + "\n".join(rows) + "\n", encoding="utf-8")
    pools = [
        Pool("cpu-ae", 3, 16.0, 64.0, 0.68, "AE", "ae-central-1"),
        Pool("gpu-eu", 2, 32.0, 256.0, 0.98, "EU", "eu-west-1", gpus=1, gpu_type="L4", profiles={"bulk": GPU_PROFILE}),
    ]
    deps = [
        Deployment(
            "fraud",
            20.0,
            2000.0,
            profile=str(bench),
            priority=2,
            residency=("AE",),
            model_load_s=0.5,
            allow_from_namespaces=("payments",),
        ),
        Deployment("bulk", 50.0, 6000.0, profile=str(bench), residency=("EU",), model_load_s=0.5, namespace="batch"),
        Deployment(
            "fraud-predictive",
            20.0,
            2000.0,
            profile=str(bench),
            residency=("AE",),
            model_load_s=0.5,
            autoscaling=Autoscaling(policy="predictive", history=str(history)),
        ),
    ]
    planned = make_plan(pools, deps, time_limit_s=5)
    read = read_plan(write_plan(planned, tmp / "plan.json"))
    assert read == planned
    assert read.placement("fraud-predictive").autoscaling.schedule
    return read


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_core_objects_validate_strictly(plan: Plan, variant: str) -> None:
    objects = build(plan, VARIANTS[variant])
    kinds = set()
    for docs in objects.values():
        for obj in docs:
            kinds.add(obj["kind"])
            if obj["kind"] in CORE_KINDS:
                validate(obj)
    assert {"ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


def test_strict_validation_catches_a_typo(plan: Plan) -> None:
    dep = next(o for o in build(plan, SECURE)["fraud"] if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(dep)


def test_deployment_carries_plan_resources_probes_and_residency(plan: Plan) -> None:
    objects = build(plan, SECURE)
    dep = next(o for o in objects["fraud"] if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    placement = plan.placement("fraud")
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert c["resources"]["requests"]["cpu"] == str(int(placement.resources.cpu))
    assert c["args"][c["args"].index("--threads") + 1] == str(placement.threads)
    assert float(c["args"][c["args"].index("--max-queue-time-ms") + 1]) == placement.slo_p99_ms
    assert dep["spec"]["replicas"] == placement.autoscaling.min_replicas
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {p["containerPort"] for p in c["ports"]} == {8000, 8001, 8002}
    assert c["args"][c["args"].index("--metrics") + 1] == f"0.0.0.0:{contract.METRICS_PORT}"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    exprs = {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}
    assert exprs[JURISDICTION_LABEL] == ["AE"] and exprs["topology.kubernetes.io/region"] == ["ae-central-1"]
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    gpu = next(o for o in objects["bulk"] if o["kind"] == "Deployment")
    assert gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["spec"]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")


def test_secrets_turn_on_the_access_policy_and_tls_in_every_pod(plan: Plan) -> None:
    from honed.cli.main import build_app

    objects = build(plan, VARIANTS["k8s-access-tls"])
    dep = next(o for o in objects["fraud"] if o["kind"] == "Deployment")
    validate(dep)
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c["args"]
    assert args[args.index("--access") + 1] == "/etc/honed/access/access.yaml"
    assert args[args.index("--tls-cert") + 1] == "/etc/honed/tls/tls.crt"
    assert args[args.index("--tls-key") + 1] == "/etc/honed/tls/tls.key"
    assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"honed-access", "honed-tls"}
    assert {m["mountPath"] for m in c["volumeMounts"] if m.get("readOnly")} >= {"/etc/honed/access", "/etc/honed/tls"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS"
    serve = typer.main.get_command(build_app(args)).commands["serve"]  # type: ignore[attr-defined]
    serve.make_context("serve", list(args[1:]))  # the container's command line parses as honed serve's


def test_one_autoscaler_per_target_and_keda_behavior_is_a_valid_hpa_behavior(plan: Plan) -> None:
    for fmt in ("k8s", "kserve"):
        for name, docs in build(plan, VARIANTS[f"{fmt}-insecure"]).items():
            scalers = [o for o in docs if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
            if name in ("_namespaces", "_forecast", "_alerts"):
                continue
            if fmt == "kserve":
                isvc = next(o for o in docs if o["kind"] == "InferenceService")
                external = isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
                assert len(scalers) == (1 if external else 0)
            else:
                assert len(scalers) == 1
    so = next(o for o in build(plan, SECURE)["fraud-predictive"] if o["kind"] == "ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert [t["type"] for t in so["spec"]["triggers"]] == ["cpu", "metrics-api"]
    forecast = so["spec"]["triggers"][1]
    assert forecast["metricType"] == "AverageValue"
    assert forecast["metadata"] == {
        "url": "http://honed-forecast.default.svc.cluster.local:8080/forecast/fraud-predictive",
        "format": "json",
        "valueLocation": "replicas",
        "targetValue": "1",
        "authMode": "bearer",
    }
    assert forecast["authenticationRef"] == {"name": "honed-forecast-auth"}
    # KEDA hands "advanced.horizontalPodAutoscalerConfig.behavior" to the HPA it creates: validate it as one.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": so["spec"]["scaleTargetRef"],
            "minReplicas": so["spec"]["minReplicaCount"],
            "maxReplicas": so["spec"]["maxReplicaCount"],
            "behavior": so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
        },
    }
    validate(hpa)


@pytest.mark.parametrize("variant", ["kserve-insecure", "kserve-access-tls"])
def test_kserve_runtime_container_is_a_valid_pod_container(plan: Plan, variant: str) -> None:
    """The ServingRuntime's container and the predictor's pod fields are core types: validate them in a Pod."""
    docs = build(plan, VARIANTS[variant])["fraud"]
    rt = next(o for o in docs if o["kind"] == "ServingRuntime")
    isvc = next(o for o in docs if o["kind"] == "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    pred = isvc["spec"]["predictor"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {
            "containers": rt["spec"]["containers"],
            "volumes": rt["spec"].get("volumes", []),
            "affinity": pred["affinity"],
            "serviceAccountName": pred["serviceAccountName"],
            "securityContext": pred["securityContext"],
        },
    }
    validate(pod)
    assert pred["securityContext"]["fsGroup"] == IMAGE_UID
    if variant == "kserve-insecure":
        assert "volumes" not in rt["spec"]
        return
    # The same Secrets, mounts, serve flags and HTTPS probes as the plain manifests' pods.
    plain = serving_pod(build(plan, VARIANTS["k8s-access-tls"]))
    (c,) = rt["spec"]["containers"]
    (k8s_c,) = plain["spec"]["containers"]
    secret_volumes = [v for v in plain["spec"]["volumes"] if "secret" in v]
    assert rt["spec"]["volumes"] == secret_volumes and len(secret_volumes) == 2
    assert c["volumeMounts"] == [m for m in k8s_c["volumeMounts"] if m["name"] in ("access", "tls")]
    security_flags = ["--access", "/etc/honed/access/access.yaml", "--tls-cert", "/etc/honed/tls/tls.crt"]
    assert all(flag in c["args"] for flag in security_flags) and c["args"][-6:] == k8s_c["args"][-6:]
    assert c["readinessProbe"]["httpGet"]["scheme"] == c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def kserve_python() -> str | None:
    """The interpreter that has the kserve SDK: $HONED_KSERVE_PYTHON (a separate venv, see .ci/run), or this one."""
    configured = os.environ.get("HONED_KSERVE_PYTHON")
    if configured:
        return configured
    import importlib.util

    return sys.executable if importlib.util.find_spec("kserve") is not None else None


def run_kserve_check(python: str, objects: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [python, str(Path(__file__).with_name("kserve_typed_check.py"))],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if not done.stdout.strip():
        pytest.fail(f"the kserve check did not run with {python}: {done.stderr[-2000:]}")
    return done.returncode, json.loads(done.stdout)


def test_kserve_resources_build_through_the_sdk_models(plan: Plan) -> None:
    python = kserve_python()
    if python is None:
        pytest.skip(
            "the kserve SDK is not importable here and HONED_KSERVE_PYTHON is unset: the SDK pins psutil<6 and "
            "pandas<3, which clash with honed's dependencies, so .ci/run installs it in a separate venv"
        )
    objects = [
        o
        for variant in ("kserve-insecure", "kserve-access-tls")
        for name in ("fraud", "fraud-predictive")
        for o in build(plan, VARIANTS[variant])[name]
    ]
    code, verdict = run_kserve_check(python, objects)
    assert code == 0 and not verdict["errors"], verdict
    assert sorted(verdict["checked"]) == sorted(
        f"{o['kind']}/{o['metadata']['name']}" for o in objects if o["kind"] in ("InferenceService", "ServingRuntime")
    )
    # The check can fail: a field the SDK's models do not know is reported.
    isvc = copy.deepcopy(next(o for o in objects if o["kind"] == "InferenceService"))
    isvc["spec"]["predictor"]["minReplica"] = 1
    code, verdict = run_kserve_check(python, [isvc])
    assert code == 1 and "minReplica" in verdict["errors"][0]


def test_network_policies_default_deny_and_allow_serving_ports(plan: Plan) -> None:
    objects = build(plan, SECURE)
    denies = objects["_namespaces"]
    assert {d["metadata"]["namespace"] for d in denies} == {"default", "batch"}
    assert all(d["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} for d in denies)
    np_ = next(o for o in objects["fraud"] if o["kind"] == "NetworkPolicy")
    first = np_["spec"]["ingress"][0]
    assert first["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["default", "payments"]
    assert {p["port"] for p in first["ports"]} == {8000, 8001}


def test_dashboard_queries_name_only_serve_metrics() -> None:
    text = json.dumps(dashboard())
    names = set(re.findall(r"honed_[a-z_]+", text))
    base = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    assert base <= contract.metric_names(), base - contract.metric_names()
    outcomes = set(re.findall(r'outcome!?=\\"([a-z_]+)\\"', text))
    assert outcomes and outcomes <= set(contract.OUTCOMES), outcomes
    assert {"honed_request_duration_seconds", "honed_requests_total", "honed_queue_depth"} <= base
    rollout = {"honed_rollout_weight", "honed_rollout_step", "honed_rollout_verdicts_total", "honed_rollout_agreement"}
    assert rollout <= base


def test_dockerfiles_install_honed_and_run_serve() -> None:
    for kind in ("cpu", "gpu"):
        text = dockerfile(kind)
        assert "pip install" in text and '"honed==' in text
        assert 'ENTRYPOINT ["honed"]' in text and '"serve"' in text and "EXPOSE 8000 8001" in text
    assert "onnxruntime-gpu" in dockerfile("gpu") and "nvidia/cuda" in dockerfile("gpu")


def test_write_produces_yaml_files(plan: Plan, tmp_path: Path) -> None:
    written = write(plan, tmp_path / "m", SECURE)
    names = {p.name for p in written}
    assert {
        "fraud.yaml",
        "00-network-default-deny.yaml",
        "Dockerfile.cpu",
        "Dockerfile.gpu",
        "grafana-dashboard.json",
    } <= names
    for path in written:
        if path.suffix == ".yaml":
            for d in yaml.safe_load_all(path.read_text()):
                if d["kind"] in CORE_KINDS:
                    validate(d)
    with pytest.raises(InvalidArgument, match="--format"):
        DeployOptions(fmt="helm")
    with pytest.raises(InvalidArgument, match="places nothing"):
        build(dataclasses.replace(plan, placements=()), SECURE)


def test_predictive_plans_get_a_forecast_server_the_trigger_points_at(plan: Plan, tmp_path: Path) -> None:
    objects = build(plan, dataclasses.replace(SECURE, keda_namespace="keda-system"))
    forecast = objects["_forecast"]
    kinds = ["ConfigMap", "Deployment", "Service", "NetworkPolicy", "TriggerAuthentication"]
    assert [o["kind"] for o in forecast] == kinds
    for obj in forecast[:-1]:
        validate(obj)
    config, dep, svc, netpol, auth = forecast
    # KEDA's schema is not in kubernetes-validate: checked against the fields of its CRD (keda.sh/v1alpha1).
    jsonschema.validate(auth, TRIGGER_AUTHENTICATION)
    assert auth["metadata"]["namespace"] == so_namespace(objects) and auth["spec"]["secretTargetRef"] == [
        {"parameter": "token", "name": "honed-forecast-token", "key": "token"}
    ]
    # The server reads the token from the Secret the TriggerAuthentication hands KEDA, as the image's group.
    pod = dep["spec"]["template"]["spec"]
    (token_volume,) = [v for v in pod["volumes"] if v["name"] == "token"]
    assert token_volume["secret"] == {"secretName": "honed-forecast-token", "defaultMode": 0o440}
    assert pod["securityContext"]["fsGroup"] == 10001
    container = pod["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "token"]
    assert container["args"][container["args"].index("--token-file") + 1] == f"{mount['mountPath']}/token"
    from honed.cli.main import build_app

    plan_cmds = typer.main.get_command(build_app(container["args"])).commands["plan"]  # type: ignore[attr-defined]
    plan_cmds.commands["forecast-server"].make_context("forecast-server", container["args"][2:])
    served = Plan.from_dict(json.loads(config["data"]["plan.json"]), "ConfigMap honed-forecast-plan")
    assert served.names() == ["fraud-predictive"]
    assert served.placement("fraud-predictive") == plan.placement("fraud-predictive")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["plan", "forecast-server"] and "--history-dir" in args
    # The Service the ScaledObject's URL names, on the port the server listens on.
    so = next(o for o in objects["fraud-predictive"] if o["kind"] == "ScaledObject")
    url = so["spec"]["triggers"][1]["metadata"]["url"]
    assert url.startswith(f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:")
    assert f":{svc['spec']['ports'][0]['port']}/forecast/" in url
    allowed = netpol["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert allowed == ["keda-system"]
    # A plan without predictive placements gets no forecast server.
    reactive = plan.only([p for p in plan.placements if not p.autoscaling.predictive])
    assert "_forecast" not in build(reactive, SECURE)
    written = {p.name for p in write(plan, tmp_path / "m", SECURE)}
    assert {"honed-forecast.yaml", "Dockerfile.forecast"} <= written
    assert '"honed[plan]==' in (tmp_path / "m" / "extras" / "Dockerfile.forecast").read_text()


def test_an_access_policy_is_required_unless_insecure_is_said_out_loud() -> None:
    for options in ({}, {"secrets": ServingSecrets(tls_secret="honed-tls")}, {"secrets": ServingSecrets()}):
        with pytest.raises(InvalidArgument, match=r"pass --access-secret NAME .* or --insecure-no-auth"):
            DeployOptions(**options)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"pass --access-secret NAME .* or --insecure-no-auth"):
        DeployOptions(fmt="kserve")
    with pytest.raises(InvalidArgument, match="not both"):
        DeployOptions(secrets=ServingSecrets(access_secret="a"), insecure_no_auth=True)


@pytest.mark.parametrize("variant", ["k8s-access", "k8s-access-tls"])
def test_every_serving_pod_reads_its_policy_and_scraping_needs_a_metrics_token(plan: Plan, variant: str) -> None:
    objects = build(plan, VARIANTS[variant])
    for name in (p.deployment for p in plan.placements):
        template = serving_pod(objects, name)
        pod = template["spec"]
        args = pod["containers"][0]["args"]
        assert args[args.index("--access") + 1] == "/etc/honed/access/access.yaml"
        access = next(v for v in pod["volumes"] if v["name"] == "access")
        assert access["secret"] == {"secretName": "honed-access", "defaultMode": 0o440}
        # The Secret's files are root-owned 0440: the server (uid 10001) reads them through fsGroup.
        context = pod["securityContext"]
        assert context["runAsUser"] == context["fsGroup"] == IMAGE_UID and context["runAsNonRoot"]
        notes = template["metadata"]["annotations"]
        assert notes["prometheus.io/path"] == "/metrics" and notes["honed.dev/metrics-auth"] == "bearer"
        assert notes["prometheus.io/scheme"] == ("https" if variant.endswith("tls") else "http")
        # The monitoring namespace reaches the metrics listener only, which answers nothing but /metrics.
        netpol = next(o for o in objects[name] if o["kind"] == "NetworkPolicy")
        rules = [
            r
            for r in netpol["spec"]["ingress"]
            if r["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]
        ]
        assert [[p["port"] for p in r["ports"]] for r in rules] == [[contract.METRICS_PORT]]
        assert notes["prometheus.io/port"] == str(contract.METRICS_PORT)


def test_insecure_pods_say_so_and_serve_without_a_policy(plan: Plan) -> None:
    template = serving_pod(build(plan, VARIANTS["k8s-insecure"]))
    assert "--access" not in template["spec"]["containers"][0]["args"]
    assert not [v for v in template["spec"]["volumes"] if "secret" in v]
    assert template["metadata"]["annotations"]["honed.dev/metrics-auth"] == "none"


def test_cli_insecure_no_auth_writes_open_pods_and_warns(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from honed.cli.main import run

    path = write_plan(plan, tmp_path / "plan.json")
    capsys.readouterr()
    assert run(["deploy", "k8s", "--plan", str(path), "--out", str(tmp_path / "m"), "--insecure-no-auth"]) == 0
    assert "--insecure-no-auth: the pods serve without authentication" in capsys.readouterr().err
    for doc in yaml.safe_load_all((tmp_path / "m" / "fraud.yaml").read_text()):
        validate(doc)
        if doc["kind"] == "Deployment":
            assert "--access" not in doc["spec"]["template"]["spec"]["containers"][0]["args"]
    assert run(["deploy", "k8s", "--plan", str(path), "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert "pass --access-secret NAME" in err and err.count("\n") == 1 and not (tmp_path / "m2").exists()
