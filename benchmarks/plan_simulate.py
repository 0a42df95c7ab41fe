"""Predictive + reactive autoscaling vs the Kubernetes HPA alone, on seeded diurnal-plus-burst traces.

One command: ``PYTHONPATH=src python benchmarks/plan_simulate.py`` (add ``--write`` to update docs/benchmarks.md).

The placement comes from ``honed plan`` on the Magika profile measured with ``honed bench --json``
(examples/profiles/magika-cpu.json); its provisioning lead is the measured model-load time plus the pool's
declared pod start (30 s). A second scenario declares a slower-loading model (120 s lead) to show how the gap
grows with the lead. Each trace: 3 days of ``diurnal-burst`` (seeded), the first 2 days simulated but not
counted (the seasonal forecast needs two seasons of history), the third day counted. Baseline: ``hpa`` with
Kubernetes' default behavior (scale-down window 300 s); candidate: ``predictive`` (forecast floor +
the same reactive HPA + anomaly freeze; scale-down window 60 s). Same placement, same trace, same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from honed.plan import traces  # noqa: E402
from honed.plan.document import Placement  # noqa: E402
from honed.plan.planner import make_plan  # noqa: E402
from honed.plan.simulate import SimConfig, simulate  # noqa: E402
from honed.plan.spec import Autoscaling, Deployment, Pool  # noqa: E402

PROFILE = ROOT / "examples" / "profiles" / "magika-cpu.json"
HEADING = "## Planning and autoscaling"


def placement(peak_rps: float, slo_ms: float) -> Placement:
    pools = [Pool("cpu-ae", 12, 16.0, 64.0, 0.68, "AE", "ae-central-1")]
    dep = Deployment(
        "fraud-scorer", slo_ms, peak_rps, profile=str(PROFILE), residency=("AE",), autoscaling=Autoscaling()
    )
    plan = make_plan(pools, [dep], time_limit_s=10)
    if not plan.placements:
        raise SystemExit(f"nothing placed: {[u.reason for u in plan.unplaced]}")
    return plan.placements[0]


def run(seeds: list[int], days: float, margin_z: float = 3.0) -> tuple[list[str], dict]:
    peak, slo = 400.0, 250.0
    p = placement(peak, slo)
    base = SimConfig.from_placement(p)
    hpa_cfg = dataclasses.replace(base, scale_down_window_s=300.0)
    pred_cfg = dataclasses.replace(base, scale_down_window_s=60.0, margin_z=margin_z)
    scenarios = [
        (f"measured lead {base.lead_s:.1f} s", base.lead_s),
        ("declared lead 120 s (slow-loading model)", 120.0),
    ]
    lines = [
        f"Placement: up to {p.replicas} replicas of Magika (batch {p.batch}, {p.threads} thread) on "
        f"cpu-ae, p99 SLO {slo:g} ms at {peak:g} rps peak, autoscaling target "
        f"{p.autoscaling.target_utilization:.0%} (profile {p.profile_source}, {PROFILE.relative_to(ROOT)}).",
        "",
        "| scenario | seed | HPA violation min | predictive violation min | HPA replica-h | predictive replica-h |"
        " HPA mean slack ms | predictive mean slack ms | anomalies |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    totals: dict = {}
    for label, lead in scenarios:
        tot = {"hv": 0, "pv": 0, "hh": 0.0, "ph": 0.0}
        for seed in seeds:
            tr = traces.generate("diurnal-burst", days=days, base=0.15 * peak, peak=peak, seed=seed)
            warm = (days - 1) * 86400
            h = simulate(dataclasses.replace(hpa_cfg, lead_s=lead), tr, "hpa", warmup_s=warm).summary
            q = simulate(dataclasses.replace(pred_cfg, lead_s=lead), tr, "predictive", warmup_s=warm).summary
            lines.append(
                f"| {label} | {seed} | {h.slo_violation_minutes} | {q.slo_violation_minutes} | "
                f"{h.replica_hours:.1f} | {q.replica_hours:.1f} | {h.mean_slack_ms:.0f} | "
                f"{q.mean_slack_ms:.0f} | {q.anomalies} |"
            )
            tot["hv"] += h.slo_violation_minutes
            tot["pv"] += q.slo_violation_minutes
            tot["hh"] += h.replica_hours
            tot["ph"] += q.replica_hours
            print(lines[-1], flush=True)
        fewer = 1 - tot["pv"] / tot["hv"] if tot["hv"] else 0.0
        ratio = tot["ph"] / tot["hh"]
        lines.append(
            f"| **{label}: all seeds** | | **{tot['hv']}** | **{tot['pv']}** | **{tot['hh']:.1f}** | "
            f"**{tot['ph']:.1f}** | | | |"
        )
        totals[label] = (fewer, ratio)
    lines.append("")
    for label, (fewer, ratio) in totals.items():
        lines.append(
            f"- {label}: predictive+reactive has **{fewer:.0%} fewer SLO-violation minutes** than the HPA alone, "
            f"at **{ratio:.2f}x** its replica-hours (target: >= 50% fewer at <= 1.00x)."
        )
    lines += [
        "",
        "How the predictive floor is sized (`honed.plan.predictive.ForecastFloor`): Holt-Winters peak over the "
        "provisioning lead, bounded by the highest load each of the last two days showed in the same window (a "
        "one-off burst in the history is not replayed), plus a margin of `--margin-z` robust standard deviations "
        "of the forecast's recent *relative* errors (load noise grows with the load), provisioned at the SLO-safe "
        "utilization. Where replica-hours remain above the HPA's: the HPA engine's 10% tolerance applies to the "
        "forecast metric too, so a floor within 10% of the current count proposes the current count (as does the "
        "CPU metric anywhere inside its band) and scale-in down to the floor waits; and the margin buys slack (see "
        "the mean-slack columns) that the HPA alone does not have. Seeds 1 and 2 were used while changing the "
        "policy, seeds 3 to 6 only to check it; before the change (forecast level + absolute residual margin, "
        "one-off bursts replayed) the same command gave 55-57% fewer violation minutes at 1.06x the replica-hours "
        "on seeds 1-3. Both policies run in the same simulator "
        "(`honed.plan.simulate`: 15 s reconciles, queueing-model latency) on the same seeded traces, so the "
        "ratios compare policies; they are not measurements of a real cluster.",
    ]
    return lines, totals


def write_docs(lines: list[str], command: str) -> Path:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        text = "# Benchmarks\n"
    section = "\n".join([HEADING, "", f"Command: `{command}`", "", *lines, ""])
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5,6")
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument(
        "--margin-z", type=float, default=3.0, help="the forecast floor's margin, in robust std devs of its residuals"
    )
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    start = time.perf_counter()
    lines, _ = run([int(s) for s in args.seeds.split(",")], args.days, args.margin_z)
    print("\n".join(lines[-3:]))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.write:
        cmd = "PYTHONPATH=src python benchmarks/plan_simulate.py --write"
        if args.seeds != "1,2,3,4,5,6":
            cmd += f" --seeds {args.seeds}"
        if args.margin_z != 3.0:
            cmd += f" --margin-z {args.margin_z}"
        print(write_docs(lines, cmd))


if __name__ == "__main__":
    main()
