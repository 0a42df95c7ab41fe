"""``honed plan simulate``: run policies over a trace for each placement of a plan; JSON summary and charts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument
from honed.plan.chart import write_chart
from honed.plan.document import Plan
from honed.plan.simulate import POLICIES, SimConfig, simulate
from honed.plan.traces import resolve

SUMMARY_SCHEMA = "honed.simulation/v1"


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
) -> dict[str, Any]:
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
    summary: dict[str, Any] = {"schema": SUMMARY_SCHEMA, "trace": trace, "seed": seed, "deployments": {}}
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
        summary["deployments"][config.deployment] = {
            "profile_source": config.profile_source,
            "trace": {"name": tr.name, "minutes": len(tr.times), "peak_rps": float(tr.rates.max())},
            "policies": {r.policy: r.summary for r in results},
            "chart": str(chart),
        }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
