"""KServe output (``honed deploy k8s --format kserve``): a ServingRuntime running ``honed serve`` and an
InferenceService in RawDeployment mode, per placement.

KServe's storage initializer downloads ``storageUri`` to ``/mnt/models``; the runtime serves that folder
over V2 on the same ports and probes as the plain manifests. Reactive plans let KServe create its HPA
(``autoscalerClass: hpa`` on CPU at the plan's target); predictive plans set ``autoscalerClass: external``
so KServe creates no HPA, and a KEDA ScaledObject targets the ``<name>-predictor`` Deployment KServe makes
(never two autoscalers on one target).

The access policy and TLS Secrets are those of the plain manifests (:class:`~honed.deploy.serving.ServingSecrets`):
the ServingRuntime mounts them into its container and passes them to ``honed serve`` (probes then use HTTPS), and
the InferenceService's predictor pod runs as the image's user with ``fsGroup`` so that it can read them.
"""

from __future__ import annotations

from typing import Any

from honed.deploy import k8s
from honed.deploy.serving import Pod, serve_args
from honed.plan.document import Placement
from honed.serve.contract import HTTP_PORT, LIVE_PATH, METRICS_PATH, METRICS_PORT, READY_PATH

KSERVE_MODEL_DIR = "/mnt/models"


def serving_runtime(placement: Placement, pod: Pod) -> dict[str, Any]:
    name = placement.deployment
    secrets = pod.secrets
    c = k8s.container(placement, Pod(pod.image, secrets), KSERVE_MODEL_DIR)
    probe = {"port": HTTP_PORT, "scheme": secrets.probe_scheme}
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": pod.image,
        "args": serve_args(placement, KSERVE_MODEL_DIR, secrets, pod.links),
        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": c["env"],
        "resources": c["resources"],
        "readinessProbe": {"httpGet": {**probe, "path": READY_PATH}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {**probe, "path": LIVE_PATH}, "periodSeconds": 10},
        "securityContext": c["securityContext"],
    }
    volumes = k8s.secret_volumes(secrets)
    if volumes:
        mounted = {v["name"] for v in volumes}
        container["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] in mounted]
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": f"honed-{name}", "namespace": placement.namespace, "labels": k8s.labels(name)},
        "spec": {
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "annotations": {
                "prometheus.kserve.io/port": str(METRICS_PORT),
                "prometheus.kserve.io/path": METRICS_PATH,
            },
            "containers": [container],
            **({"volumes": volumes} if volumes else {}),
        },
    }
    return runtime


def inference_service(placement: Placement, storage_uri: str) -> dict[str, Any]:
    name = placement.deployment
    auto = placement.autoscaling
    annotations = {
        "serving.kserve.io/deploymentMode": "RawDeployment",
        "honed.dev/pool": placement.pool,
        "honed.dev/profile-source": placement.profile_source,
    }
    predictor: dict[str, Any] = {
        "minReplicas": auto.min_replicas,
        "maxReplicas": auto.max_replicas,
        "serviceAccountName": name,
        "securityContext": k8s.pod_security(),
        "affinity": {"nodeAffinity": k8s.node_affinity(placement)},
        "model": {
            "modelFormat": {"name": "onnx"},
            "runtime": f"honed-{name}",
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "resources": k8s.resources(placement),
        },
    }
    if placement.resources.gpus:
        predictor["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if auto.predictive:
        annotations["serving.kserve.io/autoscalerClass"] = "external"
    else:
        annotations["serving.kserve.io/autoscalerClass"] = "hpa"
        predictor["scaleMetric"] = "cpu"
        predictor["scaleTarget"] = k8s.utilization_percent(auto)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": placement.namespace,
            "labels": k8s.labels(name),
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def manifests(
    placement: Placement, pod: Pod, *, storage_uri: str, metrics_namespace: str | None
) -> list[dict[str, Any]]:
    objects = [
        k8s.service_account(placement),
        serving_runtime(placement, pod),
        inference_service(placement, storage_uri),
        k8s.pdb(placement),
        k8s.network_policy(placement, metrics_namespace),
        *k8s.egress(placement, pod.links),
    ]
    if placement.autoscaling.predictive:
        objects.append(k8s.scaled_object(placement, "Deployment", f"{placement.deployment}-predictor"))
    return objects
