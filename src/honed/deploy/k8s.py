"""Kubernetes manifests from a plan: Deployment, Service, ServiceAccount, HPA or KEDA ScaledObject, PDB,
NetworkPolicy, as plain dicts (the writer turns them into YAML).

Choices made here:

* requests = limits (Guaranteed QoS; CPU = threads x instances, memory from the measured peak RSS), and
  ``nvidia.com/gpu`` where the plan put the replica on a GPU;
* required node affinity on ``topology.kubernetes.io/region`` and, for residency, on the protected label
  ``node-restriction.kubernetes.io/jurisdiction`` (kubelets cannot set labels under that prefix, so only an
  administrator can mark a node as being in a jurisdiction), plus ``honed.dev/pool`` for the planned pool;
* probes on the V2 health endpoints; a startup probe long enough for the measured model-load time;
* with :class:`~honed.deploy.serving.ServingSecrets`, the access policy and TLS pair mounted read-only from
  Secrets and passed to ``honed serve`` (probes then use HTTPS; the health endpoints need no token); the pod's
  ``fsGroup`` is the image's group, so the server's user can read the 0440 Secret files; ``/metrics`` then needs
  a token with the ``metrics`` action, which reaches nothing else (the pod template says so in
  ``honed.dev/metrics-auth`` for scrape configs to select on);
* a reactive plan gets an ``autoscaling/v2`` HPA with ``behavior``; a predictive plan gets a KEDA
  ScaledObject instead (never both on one Deployment): a CPU trigger for the reactive part and a
  ``metrics-api`` trigger reading the predicted replica count from the forecast server
  (``honed plan forecast-server``, :mod:`honed.deploy.forecast_server`; one per namespace, see
  :func:`forecast_server`). KEDA feeds every trigger to one HPA, which takes the largest proposal, so the
  forecast can raise the floor but never scales in on its own;
* the server opens a listener that answers ``/metrics`` alone (:data:`~honed.serve.contract.METRICS_PORT`),
  where the scrape annotations point;
* NetworkPolicy: a default deny (ingress and egress) per namespace, and per deployment ingress on the
  serving ports only from the declared namespaces, and on the metrics listener alone from the monitoring
  namespace (so a scraper never reaches the models or the repository API).
"""

from __future__ import annotations

import math
from typing import Any

from honed.deploy.forecast_server import FORECAST_PATH, FORECAST_PORT
from honed.deploy.serving import Links, Pod, ServingSecrets, http_port, serve_args
from honed.plan.document import Placement, Plan, PlannedScaling
from honed.serve.contract import GRPC_PORT, HTTP_PORT, LIVE_PATH, METRICS_PATH, METRICS_PORT, READY_PATH

JURISDICTION_LABEL = "node-restriction.kubernetes.io/jurisdiction"
REGION_LABEL = "topology.kubernetes.io/region"
POOL_LABEL = "honed.dev/pool"
MODEL_MOUNT = "/models"
FORECAST_NAME = "honed-forecast"
HISTORY_MOUNT = "/var/lib/honed/history"
PLAN_MOUNT = "/etc/honed"
FORECAST_TOKEN_MOUNT = "/var/run/secrets/honed-forecast"
FORECAST_TOKEN_SECRET = "honed-forecast-token"
"""The Secret (key ``token``) the forecast server checks callers against and KEDA presents as a bearer token."""
FORECAST_AUTH = f"{FORECAST_NAME}-auth"
"""The KEDA TriggerAuthentication that hands :data:`FORECAST_TOKEN_SECRET` to the metrics-api trigger."""
IMAGE_UID = 10001
"""The user (and group) the images run ``honed`` as (see :mod:`honed.deploy.dockerfiles`)."""


def _container_security() -> dict[str, Any]:
    """The restricted Pod Security profile for a container: non-root, read-only root, no privileges added."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "honed",
        "app.kubernetes.io/managed-by": "honed",
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def node_affinity(placement: Placement) -> dict[str, Any]:
    terms: list[dict[str, Any]] = [{"key": POOL_LABEL, "operator": "In", "values": [placement.pool]}]
    if placement.region:
        terms.append({"key": REGION_LABEL, "operator": "In", "values": [placement.region]})
    if placement.residency:
        # The placement already satisfies residency; the scheduler enforces it again on the node label.
        terms.append({"key": JURISDICTION_LABEL, "operator": "In", "values": list(placement.residency)})
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": terms}]}}


def resources(placement: Placement) -> dict[str, Any]:
    r = placement.resources
    amounts: dict[str, str] = {
        "cpu": str(int(r.cpu)) if float(r.cpu).is_integer() else f"{math.ceil(r.cpu * 1000)}m",
        "memory": f"{math.ceil(r.memory_mb)}Mi",
    }
    if r.gpus:
        amounts["nvidia.com/gpu"] = str(r.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def container(placement: Placement, pod: Pod, model_path: str) -> dict[str, Any]:
    secrets = pod.secrets
    load_s = placement.autoscaling.model_load_s
    startup_failures = max(10, math.ceil((3 * load_s + 30) / 2))
    probe = {"port": "http", "scheme": secrets.probe_scheme}
    return {
        "name": "honed",
        "image": pod.image,
        "imagePullPolicy": "IfNotPresent",
        "args": serve_args(placement, model_path, secrets, pod.links),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "OMP_NUM_THREADS", "value": str(placement.threads)},
            {"name": "HONED_DEPLOYMENT", "value": placement.deployment},
            *pod.links.env(MODEL_MOUNT),
        ],
        "resources": resources(placement),
        "startupProbe": {
            "httpGet": {**probe, "path": READY_PATH},
            "periodSeconds": 2,
            "failureThreshold": startup_failures,
        },
        "readinessProbe": {"httpGet": {**probe, "path": READY_PATH}, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {**probe, "path": LIVE_PATH}, "periodSeconds": 10, "failureThreshold": 3},
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *({"name": v, "mountPath": path, "readOnly": True} for v, _, path in secrets.volumes()),
        ],
    }


def secret_volumes(secrets: ServingSecrets) -> list[dict[str, Any]]:
    """The pod volumes of the Secrets in use, 0440 (readable by the image's group through ``fsGroup``)."""
    return [{"name": v, "secret": {"secretName": secret, "defaultMode": 0o440}} for v, secret, _ in secrets.volumes()]


def pod_security() -> dict[str, Any]:
    """The pod's security context: the image's user and group, and fsGroup so that it can read Secret files."""
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        # Secret volumes are root-owned; fsGroup makes their 0440 files the server's group's to read.
        "fsGroup": IMAGE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_spec(placement: Placement, pod: Pod, model_claim: str) -> dict[str, Any]:
    name = placement.deployment
    spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": 45,
        "affinity": {"nodeAffinity": node_affinity(placement)},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(name)},
            }
        ],
        "containers": [container(placement, pod, f"{MODEL_MOUNT}/{name}")],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": model_claim, "readOnly": True}},
            {"name": "tmp", "emptyDir": {}},
            *secret_volumes(pod.secrets),
        ],
    }
    if placement.resources.gpus:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def metadata(placement: Placement, name: str | None = None, **extra: Any) -> dict[str, Any]:
    meta = {
        "name": name or placement.deployment,
        "namespace": placement.namespace,
        "labels": labels(placement.deployment),
    }
    meta.update(extra)
    return meta


def deployment(placement: Placement, pod: Pod, model_claim: str) -> dict[str, Any]:
    name = placement.deployment
    annotations = {
        "honed.dev/pool": placement.pool,
        "honed.dev/profile-source": placement.profile_source,
        "honed.dev/expected-p99-ms": str(placement.expected_p99_ms),
        "honed.dev/slo-p99-ms": str(placement.slo_p99_ms),
    }
    if placement.model_sha256:
        annotations["honed.dev/model-sha256"] = placement.model_sha256
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(placement, annotations=annotations),
        "spec": {
            "replicas": placement.autoscaling.min_replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels(name),
                    "annotations": scrape_annotations(pod.secrets),
                },
                "spec": pod_spec(placement, pod, model_claim),
            },
        },
    }


def scrape_annotations(secrets: ServingSecrets) -> dict[str, str]:
    """Where Prometheus scrapes, and how: with an access policy ``/metrics`` wants a bearer token whose principal
    holds only the ``metrics`` action (``honed access token prometheus --action metrics``)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": METRICS_PATH,
        "prometheus.io/scheme": secrets.probe_scheme.lower(),
        "honed.dev/metrics-auth": "bearer" if secrets.access_secret else "none",
    }


def service(placement: Placement) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(placement),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(placement.deployment),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def service_account(placement: Placement) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(placement),
        "automountServiceAccountToken": False,
    }


def behavior(auto: PlannedScaling) -> dict[str, Any]:
    """The HPA behavior the plan's autoscaling uses (Kubernetes' default rates, the plan's windows)."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": int(auto.scale_up_window_s),
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": int(auto.scale_down_window_s),
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }


def utilization_percent(auto: PlannedScaling) -> int:
    return max(1, math.floor(auto.target_utilization * 100))


def hpa(placement: Placement) -> dict[str, Any]:
    name = placement.deployment
    auto = placement.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(placement),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": utilization_percent(auto)},
                    },
                }
            ],
            "behavior": behavior(auto),
        },
    }


def forecast_url(placement: Placement) -> str:
    """Where KEDA reads the deployment's predicted replica count: the forecast server of its namespace."""
    svc = f"{FORECAST_NAME}.{placement.namespace}.svc.cluster.local"
    return f"http://{svc}:{FORECAST_PORT}{FORECAST_PATH}/{placement.deployment}"


def scaled_object(
    placement: Placement, target_kind: str = "Deployment", target_name: str | None = None
) -> dict[str, Any]:
    """KEDA ScaledObject for a predictive plan: reactive CPU trigger + the forecast as a metrics-api trigger."""
    name = placement.deployment
    auto = placement.autoscaling
    triggers: list[dict[str, Any]] = [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(utilization_percent(auto))}},
        {
            # AverageValue with target 1: the HPA proposes ceil(replicas / 1), the forecast's count itself.
            "type": "metrics-api",
            "name": "forecast",
            "metricType": "AverageValue",
            "metadata": {
                "url": forecast_url(placement),
                "format": "json",
                "valueLocation": "replicas",
                "targetValue": "1",
                "authMode": "bearer",
            },
            "authenticationRef": {"name": FORECAST_AUTH},
        },
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(
            placement,
            target_name or name,
            annotations={
                "honed.dev/provisioning-lead-s": str(auto.provisioning_lead_s),
                "honed.dev/forecast": "Holt-Winters over the load history, one provisioning lead ahead, "
                "served by honed plan forecast-server",
            },
        ),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target_name or name},
            "minReplicaCount": auto.min_replicas,
            "maxReplicaCount": auto.max_replicas,
            "pollingInterval": 15,
            # If the forecast server is unreachable KEDA keeps the CPU trigger; the forecast only raises a floor.
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(auto)}},
            "triggers": triggers,
        },
    }


def forecast_server(
    namespace: str,
    plan: Plan,
    *,
    image: str,
    history_claim: str,
    keda_namespace: str,
    prometheus: str | None = None,
) -> list[dict[str, Any]]:
    """The forecast server of one namespace: ConfigMap (``plan``: the namespace's predictive placements, see
    :meth:`Plan.only`), Deployment, Service, NetworkPolicy (ingress on its port from KEDA's namespace only) and the
    KEDA TriggerAuthentication its ScaledObjects' metrics-api triggers use. The server takes callers' bearer token
    from the Secret :data:`FORECAST_TOKEN_SECRET` (key ``token``, created by the operator), which the
    TriggerAuthentication hands to KEDA. Load histories come from a PVC holding ``<deployment>.csv`` per
    deployment, kept current by an exporter (see docs/plan.md); with ``prometheus`` the server continues each
    history with the live request rate Prometheus holds (``--prometheus``), and a NetworkPolicy lets it reach DNS
    and Prometheus' port."""
    names = plan.names()
    lbl = labels(FORECAST_NAME)
    meta = {"name": FORECAST_NAME, "namespace": namespace, "labels": lbl}
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    container = {
        "name": "forecast",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "plan",
            "forecast-server",
            "--plan",
            f"{PLAN_MOUNT}/plan.json",
            "--history-dir",
            HISTORY_MOUNT,
            "--host",
            "0.0.0.0",
            "--port",
            str(FORECAST_PORT),
            "--token-file",
            f"{FORECAST_TOKEN_MOUNT}/token",
            *(["--prometheus", prometheus] if prometheus else []),
        ],
        "ports": [{"name": "http", "containerPort": FORECAST_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        # The first answer replays the history through the forecaster (seconds for days of per-minute rows).
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**probe, "periodSeconds": 10},
        "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3},
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "plan", "mountPath": PLAN_MOUNT, "readOnly": True},
            {"name": "history", "mountPath": HISTORY_MOUNT, "readOnly": True},
            {"name": "token", "mountPath": FORECAST_TOKEN_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {**meta, "name": f"{FORECAST_NAME}-plan"},
            "data": {"plan.json": plan.to_json()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "annotations": {"honed.dev/forecasts": ",".join(names)}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector(FORECAST_NAME)},
                "template": {
                    "metadata": {"labels": lbl},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(),
                        "containers": [container],
                        "volumes": [
                            {"name": "plan", "configMap": {"name": f"{FORECAST_NAME}-plan"}},
                            {
                                "name": "history",
                                "persistentVolumeClaim": {"claimName": history_claim, "readOnly": True},
                            },
                            {
                                "name": "token",
                                "secret": {"secretName": FORECAST_TOKEN_SECRET, "defaultMode": 0o440},
                            },
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": selector(FORECAST_NAME),
                "ports": [{"name": "http", "port": FORECAST_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {**meta, "name": f"{FORECAST_NAME}-allow-keda"},
            "spec": {
                "podSelector": {"matchLabels": selector(FORECAST_NAME)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": _from_namespaces([keda_namespace]),
                        "ports": [{"protocol": "TCP", "port": FORECAST_PORT}],
                    }
                ],
            },
        },
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": {**meta, "name": FORECAST_AUTH},
            "spec": {"secretTargetRef": [{"parameter": "token", "name": FORECAST_TOKEN_SECRET, "key": "token"}]},
        },
        *([egress_policy(namespace, FORECAST_NAME, [http_port("--prometheus", prometheus, "")])] if prometheus else []),
    ]


def pdb(placement: Placement) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(placement),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(placement.deployment)}},
    }


def default_deny(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "honed-default-deny",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "honed"},
        },
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def _from_namespaces(names: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": names}]
            }
        }
    ]


def network_policy(placement: Placement, metrics_namespace: str | None) -> dict[str, Any]:
    allowed = sorted({placement.namespace, *placement.allow_from_namespaces})
    ingress: list[dict[str, Any]] = [
        {
            "from": _from_namespaces(allowed),
            "ports": [{"protocol": "TCP", "port": HTTP_PORT}, {"protocol": "TCP", "port": GRPC_PORT}],
        }
    ]
    if metrics_namespace:  # the scraper reaches the listener that answers /metrics alone, never the models
        ingress.append(
            {"from": _from_namespaces([metrics_namespace]), "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(placement, f"{placement.deployment}-allow-serving"),
        "spec": {
            "podSelector": {"matchLabels": selector(placement.deployment)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def manifests(
    placement: Placement, pod: Pod, *, model_claim: str, metrics_namespace: str | None
) -> list[dict[str, Any]]:
    """Every object for one placement (the namespace's default deny is added once by the caller)."""
    autoscaler = scaled_object(placement) if placement.autoscaling.predictive else hpa(placement)
    return [
        service_account(placement),
        deployment(placement, pod, model_claim),
        service(placement),
        autoscaler,
        pdb(placement),
        network_policy(placement, metrics_namespace),
        *egress(placement, pod.links),
    ]


def egress(placement: Placement, links: Links) -> list[dict[str, Any]]:
    """The serving pods' egress policy, when they reach anything past the default deny (none: no policy)."""
    ports = links.egress_ports()
    return [egress_policy(placement.namespace, placement.deployment, ports)] if ports else []


def egress_policy(namespace: str, app: str, ports: list[int]) -> dict[str, Any]:
    """What the serving pods may reach past the default deny: DNS, and these TCP ports (the
    registry's, the trace receiver's)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{app}-allow-egress", "namespace": namespace, "labels": labels(app)},
        "spec": {
            "podSelector": {"matchLabels": selector(app)},
            "policyTypes": ["Egress"],
            "egress": [
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"ports": [{"protocol": "TCP", "port": port} for port in sorted(set(ports))]},
            ],
        },
    }
