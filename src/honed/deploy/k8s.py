"""Kubernetes manifests from a plan: Deployment, Service, ServiceAccount, HPA or KEDA ScaledObject, PDB,
NetworkPolicy, as plain dicts (the writer turns them into YAML).

Choices made here:

* requests = limits (Guaranteed QoS; CPU = threads x instances, memory from the measured peak RSS), and
  ``nvidia.com/gpu`` where the plan put the replica on a GPU;
* required node affinity on ``topology.kubernetes.io/region`` and, for residency, on the protected label
  ``node-restriction.kubernetes.io/jurisdiction`` (kubelets cannot set labels under that prefix, so only an
  administrator can mark a node as being in a jurisdiction), plus ``honed.dev/pool`` for the planned pool;
* probes on the V2 health endpoints; a startup probe long enough for the measured model-load time;
* a reactive plan gets an ``autoscaling/v2`` HPA with ``behavior``; a predictive plan gets a KEDA
  ScaledObject instead (never both on one Deployment): a CPU trigger for the reactive part and one cron
  trigger per hour carrying the forecast replica count. KEDA feeds every trigger to one HPA, which takes the
  largest proposal, so the forecast can raise the floor but never scales in on its own;
* NetworkPolicy: a default deny (ingress and egress) per namespace, and per deployment ingress on the
  serving ports only from the declared namespaces (metrics port from the monitoring namespace).
"""

from __future__ import annotations

import math
from typing import Any

from honed.deploy.metrics import GRPC_PORT, HTTP_PORT, LIVE_PATH, METRICS_PATH, READY_PATH
from honed.deploy.serving import serve_args

JURISDICTION_LABEL = "node-restriction.kubernetes.io/jurisdiction"
REGION_LABEL = "topology.kubernetes.io/region"
POOL_LABEL = "honed.dev/pool"
MODEL_MOUNT = "/models"


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "honed",
        "app.kubernetes.io/managed-by": "honed",
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def node_affinity(placement: dict[str, Any]) -> dict[str, Any]:
    terms: list[dict[str, Any]] = [{"key": POOL_LABEL, "operator": "In", "values": [placement["pool"]]}]
    if placement.get("region"):
        terms.append({"key": REGION_LABEL, "operator": "In", "values": [placement["region"]]})
    if placement.get("residency"):
        # The placement already satisfies residency; the scheduler enforces it again on the node label.
        terms.append({"key": JURISDICTION_LABEL, "operator": "In", "values": list(placement["residency"])})
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": terms}]}}


def resources(placement: dict[str, Any]) -> dict[str, Any]:
    r = placement["resources"]
    cpu = r["cpu"]
    amounts: dict[str, str] = {
        "cpu": str(int(cpu)) if float(cpu).is_integer() else f"{math.ceil(cpu * 1000)}m",
        "memory": f"{math.ceil(r['memory_mb'])}Mi",
    }
    if r.get("gpus"):
        amounts["nvidia.com/gpu"] = str(int(r["gpus"]))
    return {"requests": dict(amounts), "limits": dict(amounts)}


def container(placement: dict[str, Any], image: str, model_path: str) -> dict[str, Any]:
    load_s = float(placement["autoscaling"]["model_load_s"])
    startup_failures = max(10, math.ceil((3 * load_s + 30) / 2))
    probe = {"port": "http"}
    return {
        "name": "honed",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": serve_args(placement, model_path),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "OMP_NUM_THREADS", "value": str(placement["threads"])},
            {"name": "HONED_DEPLOYMENT", "value": placement["deployment"]},
        ],
        "resources": resources(placement),
        "startupProbe": {
            "httpGet": {**probe, "path": READY_PATH},
            "periodSeconds": 2,
            "failureThreshold": startup_failures,
        },
        "readinessProbe": {"httpGet": {**probe, "path": READY_PATH}, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {**probe, "path": LIVE_PATH}, "periodSeconds": 10, "failureThreshold": 3},
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def pod_spec(placement: dict[str, Any], image: str, model_claim: str) -> dict[str, Any]:
    name = placement["deployment"]
    spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
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
        "containers": [container(placement, image, f"{MODEL_MOUNT}/{name}")],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": model_claim, "readOnly": True}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if placement["resources"].get("gpus"):
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def metadata(placement: dict[str, Any], name: str | None = None, **extra: Any) -> dict[str, Any]:
    meta = {
        "name": name or placement["deployment"],
        "namespace": placement["namespace"],
        "labels": labels(placement["deployment"]),
    }
    meta.update(extra)
    return meta


def deployment(placement: dict[str, Any], image: str, model_claim: str) -> dict[str, Any]:
    name = placement["deployment"]
    auto = placement["autoscaling"]
    annotations = {
        "honed.dev/pool": placement["pool"],
        "honed.dev/profile-source": placement["profile_source"],
        "honed.dev/expected-p99-ms": str(placement["expected_p99_ms"]),
        "honed.dev/slo-p99-ms": str(placement["slo_p99_ms"]),
    }
    if placement.get("model_sha256"):
        annotations["honed.dev/model-sha256"] = str(placement["model_sha256"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(placement, annotations=annotations),
        "spec": {
            "replicas": int(auto["min_replicas"]),
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels(name),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": METRICS_PATH,
                    },
                },
                "spec": pod_spec(placement, image, model_claim),
            },
        },
    }


def service(placement: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(placement),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(placement["deployment"]),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
            ],
        },
    }


def service_account(placement: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(placement),
        "automountServiceAccountToken": False,
    }


def behavior(auto: dict[str, Any]) -> dict[str, Any]:
    """The HPA behavior the plan's autoscaling uses (Kubernetes' default rates, the plan's windows)."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": int(auto["scale_up_window_s"]),
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": int(auto["scale_down_window_s"]),
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }


def utilization_percent(auto: dict[str, Any]) -> int:
    return max(1, math.floor(float(auto["target_utilization"]) * 100))


def hpa(placement: dict[str, Any]) -> dict[str, Any]:
    name = placement["deployment"]
    auto = placement["autoscaling"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(placement),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": int(auto["min_replicas"]),
            "maxReplicas": int(auto["max_replicas"]),
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


def _cron(hhmm: str) -> str:
    hours, minutes = hhmm.split(":")
    return f"{int(minutes)} {int(hours)} * * *"


def scaled_object(
    placement: dict[str, Any], target_kind: str = "Deployment", target_name: str | None = None
) -> dict[str, Any]:
    """KEDA ScaledObject for a predictive plan: reactive CPU trigger + the forecast schedule as cron triggers."""
    name = placement["deployment"]
    auto = placement["autoscaling"]
    triggers: list[dict[str, Any]] = [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(utilization_percent(auto))}}
    ]
    for window in auto.get("schedule", []):
        triggers.append(
            {
                "type": "cron",
                "name": f"forecast-{window['end'].replace(':', '')}",
                "metadata": {
                    "timezone": "Etc/UTC",
                    "start": _cron(window["start"]),
                    "end": _cron(window["end"]),
                    "desiredReplicas": str(window["replicas"]),
                },
            }
        )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(
            placement,
            target_name or name,
            annotations={
                "honed.dev/provisioning-lead-s": str(auto["provisioning_lead_s"]),
                "honed.dev/forecast": "Holt-Winters day-ahead, hourly floors starting one provisioning lead early",
            },
        ),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target_name or name},
            "minReplicaCount": int(auto["min_replicas"]),
            "maxReplicaCount": int(auto["max_replicas"]),
            "pollingInterval": 15,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(auto)}},
            "triggers": triggers,
        },
    }


def pdb(placement: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(placement),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(placement["deployment"])}},
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


def network_policy(placement: dict[str, Any], metrics_namespace: str | None) -> dict[str, Any]:
    allowed = sorted({placement["namespace"], *placement.get("allow_from_namespaces", [])})
    ingress: list[dict[str, Any]] = [
        {
            "from": _from_namespaces(allowed),
            "ports": [{"protocol": "TCP", "port": HTTP_PORT}, {"protocol": "TCP", "port": GRPC_PORT}],
        }
    ]
    if metrics_namespace and metrics_namespace not in allowed:
        ingress.append(
            {"from": _from_namespaces([metrics_namespace]), "ports": [{"protocol": "TCP", "port": HTTP_PORT}]}
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(placement, f"{placement['deployment']}-allow-serving"),
        "spec": {
            "podSelector": {"matchLabels": selector(placement["deployment"])},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def manifests(
    placement: dict[str, Any], *, image: str, model_claim: str, metrics_namespace: str | None
) -> list[dict[str, Any]]:
    """Every object for one placement (the namespace's default deny is added once by the caller)."""
    autoscaler = scaled_object(placement) if placement["autoscaling"]["policy"] == "predictive" else hpa(placement)
    return [
        service_account(placement),
        deployment(placement, image, model_claim),
        service(placement),
        autoscaler,
        pdb(placement),
        network_policy(placement, metrics_namespace),
    ]
