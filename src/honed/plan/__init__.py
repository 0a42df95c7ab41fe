"""Planning: where each model runs, how many replicas it needs, and how it scales; pure functions over typed values.

``make_plan`` / ``plan_files`` (``honed plan``) place deployments on node pools from measured profiles;
``simulate`` / ``simulate_plan`` (``honed plan simulate``) replay load traces under autoscaling policies.
The plan document (:mod:`honed.plan.document`) needs only the standard library; names are imported on first use,
so reading a plan (``honed deploy``) loads neither PuLP nor statsmodels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "HPASpec": "honed.plan.hpa",
    "HorizontalPodAutoscaler": "honed.plan.hpa",
    "PodMetric": "honed.plan.hpa",
    "Plan": "honed.plan.document",
    "SimConfig": "honed.plan.simulate",
    "SimulationSummary": "honed.plan.run",
    "make_plan": "honed.plan.planner",
    "plan_files": "honed.plan.planner",
    "read_plan": "honed.plan.document",
    "simulate": "honed.plan.simulate",
    "simulate_plan": "honed.plan.run",
}

__all__ = [
    "HPASpec",
    "HorizontalPodAutoscaler",
    "Plan",
    "PodMetric",
    "SimConfig",
    "SimulationSummary",
    "make_plan",
    "plan_files",
    "read_plan",
    "simulate",
    "simulate_plan",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'honed.plan' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from honed.plan.document import Plan, read_plan
    from honed.plan.hpa import HorizontalPodAutoscaler, HPASpec, PodMetric
    from honed.plan.planner import make_plan, plan_files
    from honed.plan.run import SimulationSummary, simulate_plan
    from honed.plan.simulate import SimConfig, simulate
