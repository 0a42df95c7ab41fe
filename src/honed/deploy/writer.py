"""``honed deploy k8s``: write a plan's manifests (and the forecast server's, for predictive plans), Dockerfiles
and the Grafana dashboard to a folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from honed import __version__
from honed.deploy import alerts, k8s, kserve
from honed.deploy.dockerfiles import dockerfile
from honed.deploy.grafana import dashboard
from honed.deploy.serving import Links, Pod, RegistrySource, ServingSecrets, Tracing, http_port
from honed.errors import InvalidArgument
from honed.plan.document import Placement, Plan

FORMATS = ("k8s", "kserve")


@dataclass(frozen=True)
class DeployOptions:
    """How a plan becomes manifests: the format, images, volume claims, namespaces and serving Secrets.

    Images default to ``honed:VERSION-cpu`` / ``-gpu`` / ``-forecast``; with ``metrics_namespace`` None only the
    placement's own namespaces reach ``/metrics``. Checked when made, before any plan is read.

    Every pod serves with an access policy (``secrets.access_secret``) unless ``insecure_no_auth`` says out loud
    that it must not; neither, or both, is refused. KServe output carries the same Secrets as the plain manifests.
    """

    fmt: str = "k8s"
    image_cpu: str | None = None
    image_gpu: str | None = None
    model_claim: str = "honed-models"
    storage_uri_prefix: str = "pvc://honed-models"
    metrics_namespace: str | None = "monitoring"
    image_forecast: str | None = None
    history_claim: str = "honed-load-history"
    keda_namespace: str = "keda"
    secrets: ServingSecrets | None = None
    insecure_no_auth: bool = False
    registry: RegistrySource | None = None
    """Serve every pod's model from this shared registry, so that a rollout spans all replicas (k8s only)."""
    tracing: Tracing | None = None
    """Every serving pod exports spans to this OTLP receiver."""
    prometheus: str | None = None
    """The forecast servers continue their load histories from this Prometheus (else the one the plan recorded)."""
    slo_objective: float = alerts.DEFAULT_OBJECTIVE
    """The availability objective the PrometheusRule's burn-rate alerts spend the budget of."""

    def __post_init__(self) -> None:
        alerts.check_objective(self.slo_objective)
        if self.prometheus is not None:
            http_port("--prometheus", self.prometheus, "http://prometheus.monitoring.svc:9090")
        if self.fmt not in FORMATS:
            raise InvalidArgument(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.registry is not None and self.fmt == "kserve":
            raise InvalidArgument(
                "--registry is for --format k8s; with KServe, split traffic with the InferenceService's "
                "canaryTrafficPercent (see docs/serve.md)"
            )
        has_policy = self.secrets is not None and bool(self.secrets.access_secret)
        if has_policy and self.insecure_no_auth:
            raise InvalidArgument("give --access-secret or --insecure-no-auth, not both")
        if not has_policy and not self.insecure_no_auth:
            raise InvalidArgument(
                "the pods would serve without an access policy: pass --access-secret NAME (a Secret holding "
                "access.yaml, from `honed access token ... --policy access.yaml`), or --insecure-no-auth to serve "
                "without authentication"
            )


def build(plan: Plan, options: DeployOptions) -> dict[str, list[dict[str, Any]]]:
    """Objects per deployment name (plus ``_namespaces`` for the default-deny policies, ``_alerts`` for the
    PrometheusRules and, when any placement is predictive, ``_forecast`` for the forecast server its KEDA trigger
    reads)."""
    o = options
    if not plan.placements:
        raise InvalidArgument("the plan places nothing; see its 'unplaced' reasons")
    cpu_image = o.image_cpu or f"honed:{__version__}-cpu"
    gpu_image = o.image_gpu or f"honed:{__version__}-gpu"
    links = Links(o.registry, o.tracing)
    out: dict[str, list[dict[str, Any]]] = {}
    namespaces: set[str] = set()
    for p in plan.placements:
        image = gpu_image if p.resources.gpus else cpu_image
        namespaces.add(p.namespace)
        pod = Pod(image, o.secrets or ServingSecrets(), links)
        if o.fmt == "k8s":
            out[p.deployment] = k8s.manifests(p, pod, model_claim=o.model_claim, metrics_namespace=o.metrics_namespace)
        else:
            uri = f"{o.storage_uri_prefix.rstrip('/')}/{p.deployment}"
            out[p.deployment] = kserve.manifests(p, pod, storage_uri=uri, metrics_namespace=o.metrics_namespace)
    out["_namespaces"] = [k8s.default_deny(ns) for ns in sorted(namespaces)]
    out["_alerts"] = alerts.prometheus_rules(plan, o.slo_objective)
    predictive: dict[str, list[Placement]] = {}
    for p in plan.placements:
        if p.autoscaling.predictive:
            predictive.setdefault(p.namespace, []).append(p)
    if predictive:
        forecast_image = o.image_forecast or f"honed:{__version__}-forecast"
        out["_forecast"] = [
            obj
            for ns, group in sorted(predictive.items())
            for obj in k8s.forecast_server(
                ns,
                plan.only(group),
                image=forecast_image,
                history_claim=o.history_claim,
                keda_namespace=o.keda_namespace,
                prometheus=o.prometheus or recorded_prometheus(group),
            )
        ]
    return out


def recorded_prometheus(placements: list[Placement]) -> str | None:
    """The Prometheus ``honed plan --prometheus`` read these placements' live figures from, if any."""
    return next((p.live.prometheus for p in placements if p.live is not None), None)


def write(plan: Plan, out_dir: str | Path, options: DeployOptions) -> list[Path]:
    """Write ``<deployment>.yaml`` per placement, ``00-network-default-deny.yaml``, ``honed-alerts.yaml``,
    Dockerfiles, dashboard."""
    objects = build(plan, options)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, docs in objects.items():
        fname = {
            "_namespaces": "00-network-default-deny.yaml",
            "_forecast": "honed-forecast.yaml",
            "_alerts": "honed-alerts.yaml",
        }.get(name, f"{name}.yaml")
        path = d / fname
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
        written.append(path)
    extras = d / "extras"
    extras.mkdir(exist_ok=True)
    for kind in ("cpu", "gpu"):
        path = extras / f"Dockerfile.{kind}"
        path.write_text(dockerfile(kind), encoding="utf-8")
        written.append(path)
    if "_forecast" in objects:
        # The forecast server's image: the CPU image with the planning extra (statsmodels).
        path = extras / "Dockerfile.forecast"
        path.write_text(dockerfile("cpu", extras="[plan]"), encoding="utf-8")
        written.append(path)
    path = extras / "grafana-dashboard.json"
    path.write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")
    written.append(path)
    return written
