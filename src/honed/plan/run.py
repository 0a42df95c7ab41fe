"""``honed plan simulate``: run policies over a trace for each placement of a plan; JSON summary and charts.

:func:`simulate_plan` returns a :class:`SimulationSummary` and writes its JSON form as ``summary.json``
(schema ``honed.simulation/v1``)::

    {"schema", "trace", "seed",
     "deployments": {name: {"profile_source", "trace": {"name", "minutes", "peak_rps"},
                            "policies": {policy: PolicySummary}, "chart"}}}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument
from honed.fields import Document, as_dict
from honed.plan.chart import write_chart
from honed.plan.document import Plan
from honed.plan.simulate import POLICIES, PolicySummary, SimConfig, simulate
from honed.plan.traces import resolve

SUMMARY_SCHEMA = "honed.simulation/v1"


@dataclass(frozen=True)
class TraceInfo(Document):
    """The trace one deployment was simulated under: its name, length in minutes and highest load."""

    name: str
    minutes: int
    peak_rps: float


@dataclass(frozen=True)
class DeploymentSimulation(Document):
    """Every policy's summary for one placement, and the chart drawn of them."""

    profile_source: str
    trace: TraceInfo
    policies: dict[str, PolicySummary]
    chart: str


@dataclass(frozen=True)
class SimulationSummary:
    """What ``honed plan simulate`` found, per deployment (``summary.json``)."""

    trace: str
    seed: int
    deployments: dict[str, DeploymentSimulation]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SUMMARY_SCHEMA} | as_dict(self)


def simulate_plan(
    plan: Plan,
    *,
    trace: str,
    policies: Sequence[str],
    out: str | Path,
    seed: int = 0,
    days: float = 3.0,
    warmup_s: float = 0.0,
    deployments: Sequence[str] = (),
) -> SimulationSummary:
    """Simulate every (selected) placement under each policy; writes summary.json and one PNG per deployment."""
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise InvalidArgument(f"unknown policy {', '.join(bad) or '(none)'}; choose from {', '.join(POLICIES)}")
    placements = [p for p in plan.placements if not deployments or p.deployment in deployments]
    if not placements:
        raise InvalidArgument(
            "the plan has no placement to simulate" + (f" named {', '.join(deployments)}" if deployments else "")
        )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    simulated: dict[str, DeploymentSimulation] = {}
    for placement in placements:
        config = SimConfig.from_placement(placement)
        peak = placement.peak_rps or config.point.throughput * config.max_replicas * 0.5
        tr = resolve(trace, seed=seed, days=days, base=0.15 * peak, peak=peak)
        results = [simulate(config, tr, policy, warmup_s=warmup_s) for policy in policies]
        chart = write_chart(
            results,
            config.slo_p99_ms,
            out_dir / f"{config.deployment}.png",
            title=f"{config.deployment}: trace {tr.name} (seed {seed}), profile {config.profile_source}",
        )
        simulated[config.deployment] = DeploymentSimulation(
            profile_source=config.profile_source,
            trace=TraceInfo(tr.name, len(tr.times), float(tr.rates.max())),
            policies={r.policy: r.summary for r in results},
            chart=str(chart),
        )
    summary = SimulationSummary(trace, seed, simulated)
    (out_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary
