"""Deploy: Kubernetes and KServe manifests, Dockerfiles and a Grafana dashboard, from a plan.

``write(plan, out_dir, options)`` is ``honed deploy k8s``; ``build(plan, options)`` returns the objects without
writing them. Both take a :class:`honed.plan.document.Plan` (read with :func:`honed.plan.document.read_plan`, no
planning extras) and a :class:`DeployOptions`.
"""

from honed.deploy.writer import DeployOptions, build, write

__all__ = ["DeployOptions", "build", "write"]
