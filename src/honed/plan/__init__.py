"""Planning: where each model runs, how many replicas it needs, and how it scales; pure functions over plain data.

``make_plan`` / ``plan_files`` (``honed plan``) place deployments on node pools from measured profiles;
``simulate`` / ``simulate_plan`` (``honed plan simulate``) replay load traces under autoscaling policies.
"""

from honed.plan.hpa import HorizontalPodAutoscaler, HPASpec, PodMetric
from honed.plan.planner import make_plan, plan_files
from honed.plan.run import read_plan, simulate_plan
from honed.plan.simulate import SimConfig, simulate

__all__ = [
    "HPASpec",
    "HorizontalPodAutoscaler",
    "PodMetric",
    "SimConfig",
    "make_plan",
    "plan_files",
    "read_plan",
    "simulate",
    "simulate_plan",
]
