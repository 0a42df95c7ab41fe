"""Deploy: Kubernetes and KServe manifests, Dockerfiles and a Grafana dashboard, from a plan.

``write(plan, out_dir)`` is ``honed deploy k8s``; ``build(plan)`` returns the objects without writing them. Both
take a :class:`honed.plan.document.Plan` (read with :func:`honed.plan.document.read_plan`, no planning extras).
"""

from honed.deploy.writer import build, write

__all__ = ["build", "write"]
