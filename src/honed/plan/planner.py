"""``honed plan``: from a fleet, deployments and their profiles to a :class:`~honed.plan.document.Plan`, with
the reasons.

This module wires the pure parts together (profiles -> sizing -> placement) and returns the typed plan
document: ``placements`` (pool, replicas, operating point, resources, nodes, planned scaling, profile,
reasons), ``unplaced`` (one reason each), pool use, and ``decisions`` (per deployment, every pool considered
and why it was taken or not). :func:`honed.plan.document.write_plan` is the one writer of ``plan.json``.
"""

from __future__ import annotations

import math
from pathlib import Path

from honed.errors import InvalidArgument
from honed.plan.document import (
    DECLARED,
    Decision,
    Placement,
    Plan,
    PlannedScaling,
    PoolUse,
    Profile,
    Resources,
    Unplaced,
)
from honed.plan.placement import Assignment, place
from honed.plan.predictive import daily_schedule, load_history
from honed.plan.profiles import declared_profile, measured_profile
from honed.plan.sizing import Candidate, candidates_for, residency_reason
from honed.plan.spec import Deployment, Pool


def profile_for(deployment: Deployment, pool: Pool, measured: Profile | None) -> Profile | None:
    """The profile that applies on ``pool``: the pool's declared one, else the measured one on CPU-only pools."""
    declared = declared_profile(pool, deployment)
    if declared is not None:
        return declared
    return measured if pool.gpus == 0 else None


def make_plan(
    pools: list[Pool],
    deployments: list[Deployment],
    *,
    time_limit_s: float = 10.0,
    load_history: dict[str, tuple[list[float], list[float]]] | None = None,
) -> Plan:
    """Plan every deployment onto ``pools``.

    ``load_history``: deployment -> (times, requests/s) to plan a predictive policy from instead of its CSV
    alone (:mod:`honed.plan.live` reads it from Prometheus); too short a history leaves the schedule out.
    """
    candidates: dict[str, list[Candidate]] = {}
    notes: dict[str, dict[str, str]] = {}
    chosen: dict[str, str] = {}
    for d in deployments:
        allowed = [p for p in pools if residency_reason(d, p) is None]
        needs_measured = any(p.gpus == 0 and d.name not in p.profiles for p in allowed)
        measured = measured_profile(d) if needs_measured else None
        pool_notes: dict[str, str] = {}
        found: list[Candidate] = []
        for pool in pools:
            profile = profile_for(d, pool, measured) if residency_reason(d, pool) is None else None
            cands, reason = candidates_for(d, pool, profile)
            if reason is not None:
                pool_notes[pool.name] = f"excluded: {reason}"
            else:
                tag = " [profile declared, not measured]" if cands[0].profile.declared else ""
                pool_notes[pool.name] = f"best candidate: {cands[0].describe()}{tag}"
                found.extend(cands)
        candidates[d.name] = found
        notes[d.name] = pool_notes
    result = place(pools, deployments, candidates, time_limit_s=time_limit_s)

    by_pool = {p.name: p for p in pools}
    placements = []
    for d in sorted(deployments, key=lambda d: (-d.priority, d.name)):
        a = result.assignments.get(d.name)
        if a is None:
            continue
        reasons = _reasons(d, a, candidates[d.name], notes[d.name], by_pool, result.assignments)
        chosen[d.name] = reasons[0]
        history = (load_history or {}).get(d.name)
        placements.append(_placement(d, a, by_pool[a.candidate.pool], reasons, history))
    unplaced = []
    for d in sorted(deployments, key=lambda d: (-d.priority, d.name)):
        if d.name in result.unplaced:
            reason = result.unplaced[d.name]
            if not candidates[d.name]:
                considered = "; ".join(f"{k}: {v}" for k, v in notes[d.name].items())
                if d.residency is not None and all(residency_reason(d, p) for p in pools):
                    reason = f"no pool satisfies residency [{', '.join(d.residency)}] ({considered})"
                else:
                    reason = f"{reason}: {considered}"
            unplaced.append(Unplaced(d.name, d.priority_name, reason))
            chosen[d.name] = f"unplaced: {reason}"
    pools_out = []
    for p in pools:
        use = result.node_use.get(p.name, [])
        used_nodes = [k for k, u in enumerate(use) if u["cpu"] or u["memory_mb"] or u["gpus"]]
        pools_out.append(
            PoolUse(
                name=p.name,
                jurisdiction=p.jurisdiction,
                region=p.region,
                nodes=p.count,
                nodes_used=len(used_nodes),
                cost_per_hour_used=round(len(used_nodes) * p.cost_per_hour, 4),
                cpu_requested=sum(u["cpu"] for u in use),
                cpu_total=p.cpu * p.count,
                memory_mb_requested=sum(u["memory_mb"] for u in use),
                gpus_requested=int(sum(u["gpus"] for u in use)),
                gpu_type=p.gpu_type,
            )
        )
    return Plan(
        solver=result.solver,
        placements=tuple(placements),
        unplaced=tuple(unplaced),
        pools=tuple(pools_out),
        decisions={d.name: Decision(notes[d.name], chosen.get(d.name)) for d in deployments},
        total_cost_per_hour=round(sum(pl.cost_per_hour for pl in placements), 4),
    )


def _reasons(
    d: Deployment,
    a: Assignment,
    cands: list[Candidate],
    notes: dict[str, str],
    by_pool: dict[str, Pool],
    assignments: dict[str, Assignment],
) -> list[str]:
    c = a.candidate
    pool = by_pool[c.pool]
    where = f"{pool.jurisdiction or 'unlabelled'}/{pool.region or 'no region'}"
    first = (
        f"placed on {c.pool} ({where}): {c.describe()} meets p99 <= {d.slo_p99_ms:g} ms at {d.peak_rps:g} rps "
        f"with each replica at <= {c.target_utilization:.0%} of its measured capacity"
    )
    reasons = [first]
    if c.target_utilization < d.autoscaling.target_utilization - 1e-9:
        reasons.append(
            f"autoscaling target lowered from {d.autoscaling.target_utilization:.0%} to {c.target_utilization:.0%}: "
            "above that utilization the expected p99 breaks the SLO"
        )
    cheapest = min(cands, key=lambda x: x.cost_per_hour)
    if cheapest is c or math.isclose(cheapest.cost_per_hour, c.cost_per_hour):
        reasons.append("the cheapest way found to meet the SLO")
    else:
        sharing = sorted(
            name
            for name, other in assignments.items()
            if name != d.name and other.candidate.pool == c.pool and set(other.nodes) & set(a.nodes)
        )
        cheaper_pool = by_pool[cheapest.pool]
        cheaper_busy = any(other.candidate.pool == cheapest.pool for other in assignments.values())
        if sharing and not cheaper_busy:
            reasons.append(
                f"shares {c.pool} nodes already paid for by {', '.join(sharing)}; the cheaper candidate on "
                f"{cheapest.pool} (${cheapest.cost_per_hour:.2f}/h) would start a node of its own "
                f"(${cheaper_pool.cost_per_hour:.2f}/h), which costs more overall"
            )
        else:
            reasons.append(
                f"the cheaper candidate on {cheapest.pool} ({cheapest.describe()}) did not fit the capacity left "
                "after deployments of higher priority"
            )
    if d.residency is not None:
        reasons.append(f"residency [{', '.join(d.residency)}] holds: pool jurisdiction is {pool.jurisdiction}")
    if c.profile.declared:
        reasons.append(f"profile {DECLARED} ({c.profile.origin}); measure it on that hardware before relying on it")
    else:
        reasons.append(f"profile measured on {c.profile.hardware} ({c.profile.origin})")
    reasons.extend(f"{name}: {note}" for name, note in notes.items() if name != c.pool)
    return reasons


def _placement(
    d: Deployment,
    a: Assignment,
    pool: Pool,
    reasons: list[str],
    observed: tuple[list[float], list[float]] | None = None,
) -> Placement:
    c = a.candidate
    auto = d.autoscaling
    max_r = auto.max_replicas or c.replicas
    min_r = min(auto.min_replicas or d.min_replicas, max_r)
    capacity = c.point.throughput
    lead = c.profile.model_load_s + pool.pod_start_s
    history, schedule = None, None
    if auto.policy == "predictive":
        if auto.history is None and observed is None:
            raise InvalidArgument(
                f"deployment {d.name!r}: the predictive policy needs autoscaling.history (a CSV of time, requests/s)"
            )
        times, rates = observed if observed is not None else load_history(str(auto.history))
        history = auto.history
        try:
            schedule = daily_schedule(
                times,
                rates,
                capacity_rps=capacity,
                target_utilization=c.target_utilization,
                lead_s=lead,
                min_replicas=min_r,
                max_replicas=max_r,
                season_s=auto.season_s,
            )
        except InvalidArgument as exc:
            if observed is None:
                raise
            reasons.append(f"no day-ahead schedule yet: {exc}")
    scaling = PlannedScaling(
        policy=auto.policy,
        min_replicas=min_r,
        max_replicas=max_r,
        target_utilization=round(c.target_utilization, 4),
        capacity_per_replica_rps=capacity,
        target_rps_per_replica=round(capacity * c.target_utilization, 3),
        scale_up_window_s=auto.scale_up_window_s,
        scale_down_window_s=auto.scale_down_window,
        model_load_s=c.profile.model_load_s,
        pod_start_s=pool.pod_start_s,
        provisioning_lead_s=lead,
        max_extra_fraction=auto.max_extra_fraction,
        max_extra_cost_per_hour=auto.max_extra_cost_per_hour,
        replica_cost_per_hour=c.replica_cost_per_hour,
        season_s=auto.season_s,
        history=history,
        schedule=schedule,
    )
    return Placement(
        deployment=d.name,
        namespace=d.namespace,
        pool=c.pool,
        replicas=c.replicas,
        instances=c.point.instances,
        threads=c.point.threads,
        batch=c.point.batch,
        expected_p99_ms=round(c.expected_p99_ms, 3),
        slo_p99_ms=d.slo_p99_ms,
        peak_rps=d.peak_rps,
        cost_per_hour=round(c.cost_per_hour, 4),
        priority=d.priority_name,
        residency=tuple(d.residency) if d.residency else None,
        jurisdiction=pool.jurisdiction,
        region=pool.region,
        gpu_type=pool.gpu_type if c.gpus else None,
        resources=Resources(cpu=c.cpu, memory_mb=c.memory_mb, gpus=c.gpus),
        nodes={f"{pool.name}-{k}": r for k, r in sorted(a.nodes.items())},
        model=d.model,
        model_sha256=c.profile.model_sha256,
        allow_from_namespaces=tuple(d.allow_from_namespaces),
        profile_source=c.profile.source,
        profile=c.profile,
        autoscaling=scaling,
        reasons=tuple(reasons),
    )


def plan_files(fleet: str | Path, deployments: str | Path, *, time_limit_s: float = 10.0) -> Plan:
    """Read the two files and plan; the Python counterpart of ``honed plan``."""
    from honed.plan.spec import load_deployments, load_fleet

    return make_plan(load_fleet(fleet), load_deployments(deployments), time_limit_s=time_limit_s)
