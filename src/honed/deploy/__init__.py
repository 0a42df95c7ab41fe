"""Deploy: Kubernetes and KServe manifests, Dockerfiles and a Grafana dashboard, from a plan (plain data in, text out).

``write(plan, out_dir)`` is ``honed deploy k8s``; ``build(plan)`` returns the objects without writing them.
"""

from honed.deploy.writer import build, write

__all__ = ["build", "write"]
