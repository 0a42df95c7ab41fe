"""Placement: which pool each deployment runs on, and on which nodes, by mixed-integer programming.

The model (built with PuLP, solved in-process by the HiGHS MILP solver):

* ``x[d, o]`` binary: deployment ``d`` runs as candidate ``o`` (a pool, an operating point, a replica count);
  at most one per deployment. Only candidates that residency allows exist at all (fail closed), and the
  result is checked again after solving.
* ``n[d, o, k]`` integer: replicas of that candidate on node ``k`` of its pool; they sum to the candidate's
  replica count when chosen. Per node, CPU, memory and GPUs requested never exceed what the node has.
* ``y[p, k]`` binary: node ``k`` of pool ``p`` is used (it is paid for).

Objective, lexicographic by weights: first place as many deployments of the highest priority as possible,
then of the next, and so on (a weight of ``(N+1)**rank`` per deployment outweighs every lower level
together); then the least cost: nodes used, and each placement's share of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pulp

from honed.errors import HonedError, ResidencyViolation
from honed.plan.document import Solver
from honed.plan.sizing import Candidate, residency_reason
from honed.plan.spec import Deployment, Pool

CANDIDATES_PER_POOL = 4


@dataclass(frozen=True)
class Assignment:
    candidate: Candidate
    nodes: dict[int, int]
    """Node index in the pool -> replicas on it."""


@dataclass
class PlacementResult:
    assignments: dict[str, Assignment]
    unplaced: dict[str, str]
    solver: Solver
    node_use: dict[str, list[dict[str, float]]] = field(default_factory=dict)


def per_node_fit(pool: Pool, c: Candidate) -> int:
    """How many replicas of ``c`` one empty node of ``pool`` holds."""
    fits = [math.floor(pool.cpu / c.cpu + 1e-9), math.floor(pool.memory_gb * 1024.0 / c.memory_mb + 1e-9)]
    if c.gpus:
        fits.append(pool.gpus // c.gpus)
    return max(0, min(fits))


def place(
    pools: list[Pool],
    deployments: list[Deployment],
    candidates: dict[str, list[Candidate]],
    *,
    time_limit_s: float = 10.0,
) -> PlacementResult:
    """Choose at most one candidate per deployment; see the module docstring for the model."""
    by_pool = {p.name: p for p in pools}
    by_name = {d.name: d for d in deployments}
    options: dict[str, list[Candidate]] = {}
    too_large: dict[str, list[str]] = {}
    for d in deployments:
        kept: list[Candidate] = []
        per_pool: dict[str, int] = {}
        for c in candidates.get(d.name, []):
            pool = by_pool[c.pool]
            if residency_reason(d, pool) is not None:  # never even offered to the solver
                continue
            room = per_node_fit(pool, c) * pool.count
            if c.replicas > room:
                too_large.setdefault(d.name, []).append(
                    f"{c.describe()} needs more replicas than pool {pool.name} holds even empty ({room})"
                )
                continue
            if per_pool.get(c.pool, 0) < CANDIDATES_PER_POOL:
                kept.append(c)
                per_pool[c.pool] = per_pool.get(c.pool, 0) + 1
        options[d.name] = kept

    levels = sorted({d.priority for d in deployments})
    weight = {lvl: float((len(deployments) + 1) ** rank) for rank, lvl in enumerate(levels)}
    cost_norm = 1.0 + sum(p.count * p.cost_per_hour for p in pools) * 1.01

    prob = pulp.LpProblem("honed_placement", pulp.LpMaximize)
    x: dict[tuple[str, int], pulp.LpVariable] = {}
    n: dict[tuple[str, int, int], pulp.LpVariable] = {}
    y: dict[tuple[str, int], pulp.LpVariable] = {}
    used_pools = {c.pool for opts in options.values() for c in opts}
    for p in pools:
        if p.name not in used_pools:
            continue
        for k in range(p.count):
            y[p.name, k] = prob.add_variable(f"y_{_v(p.name)}_{k}", cat="Binary")
        for k in range(p.count - 1):
            prob += y[p.name, k] >= y[p.name, k + 1]
    for d in deployments:
        for i, c in enumerate(options[d.name]):
            x[d.name, i] = prob.add_variable(f"x_{_v(d.name)}_{i}", cat="Binary")
            pool = by_pool[c.pool]
            cap = min(c.replicas, per_node_fit(pool, c))
            for k in range(pool.count):
                n[d.name, i, k] = prob.add_variable(f"n_{_v(d.name)}_{i}_{k}", lowBound=0, upBound=cap, cat="Integer")
            prob += pulp.lpSum(n[d.name, i, k] for k in range(pool.count)) == c.replicas * x[d.name, i]
        if options[d.name]:
            prob += pulp.lpSum(x[d.name, i] for i in range(len(options[d.name]))) <= 1
    for p in pools:
        if p.name not in used_pools:
            continue
        for k in range(p.count):
            terms = [
                (n[d.name, i, k], c) for d in deployments for i, c in enumerate(options[d.name]) if c.pool == p.name
            ]
            prob += pulp.lpSum(v * c.cpu for v, c in terms) <= p.cpu * y[p.name, k]
            prob += pulp.lpSum(v * c.memory_mb for v, c in terms) <= p.memory_gb * 1024.0 * y[p.name, k]
            if any(c.gpus for _, c in terms):
                prob += pulp.lpSum(v * c.gpus for v, c in terms) <= p.gpus * y[p.name, k]
    placed_value = pulp.lpSum(weight[by_name[d].priority] * v for (d, _), v in x.items())
    node_cost = pulp.lpSum(by_pool[p].cost_per_hour * v for (p, _), v in y.items())
    share_cost = pulp.lpSum(options[d][i].cost_per_hour * v for (d, i), v in x.items())
    prob += placed_value - (node_cost + 0.001 * share_cost) / cost_norm

    solver = pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=0.0, threads=1)
    status = prob.solve(solver) if x else pulp.LpStatusOptimal
    status_name = pulp.LpStatus.get(status, str(status))
    if x and status != pulp.LpStatusOptimal:
        raise HonedError(f"the placement solver ended with status {status_name}; raise --time-limit and retry")
    assignments: dict[str, Assignment] = {}
    for d in deployments:
        for i, c in enumerate(options[d.name]):
            if (x[d.name, i].value() or 0) > 0.5:
                pool = by_pool[c.pool]
                nodes = {k: round(n[d.name, i, k].value() or 0) for k in range(pool.count)}
                assignments[d.name] = Assignment(c, {k: v for k, v in nodes.items() if v})
    result = PlacementResult(
        assignments=assignments,
        unplaced={},
        solver=Solver(
            name="PuLP + HiGHS (mixed-integer programming)",
            status=status_name,
            time_limit_s=float(time_limit_s),
            objective=float(pulp.value(prob.objective)) if x else 0.0,
        ),
    )
    result.node_use = _verify(pools, by_name, assignments)
    for d in deployments:
        if d.name in assignments:
            continue
        result.unplaced[d.name] = _unplaced_reason(d, options[d.name], too_large.get(d.name, []), assignments, by_name)
    return result


def _v(name: str) -> str:
    return name.replace("-", "_")


def _verify(pools: list[Pool], deployments: dict[str, Deployment], assignments: dict[str, Assignment]) -> dict:
    """Re-check every hard constraint on the solver's answer; a violation is a bug and fails closed."""
    use: dict[str, list[dict[str, float]]] = {
        p.name: [{"cpu": 0.0, "memory_mb": 0.0, "gpus": 0.0} for _ in range(p.count)] for p in pools
    }
    by_pool = {p.name: p for p in pools}
    for name, a in assignments.items():
        pool = by_pool[a.candidate.pool]
        reason = residency_reason(deployments[name], pool)
        if reason is not None:
            raise ResidencyViolation(f"refusing a placement of {name} that breaks {reason}")
        if sum(a.nodes.values()) != a.candidate.replicas:
            raise HonedError(
                f"placement of {name} spreads {sum(a.nodes.values())} replicas, planned {a.candidate.replicas}"
            )
        for k, r in a.nodes.items():
            use[pool.name][k]["cpu"] += r * a.candidate.cpu
            use[pool.name][k]["memory_mb"] += r * a.candidate.memory_mb
            use[pool.name][k]["gpus"] += r * a.candidate.gpus
    for p in pools:
        for k, u in enumerate(use[p.name]):
            if u["cpu"] > p.cpu + 1e-6 or u["memory_mb"] > p.memory_gb * 1024 + 1e-6 or u["gpus"] > p.gpus:
                raise HonedError(f"placement overfills node {k} of pool {p.name}: {u}")
    return use


def _unplaced_reason(
    d: Deployment,
    options: list[Candidate],
    too_large: list[str],
    assignments: dict[str, Assignment],
    by_name: dict[str, Deployment],
) -> str:
    if not options:
        if too_large:
            return "; ".join(too_large)
        return "no pool can run it (see the pool reasons)"
    pools = sorted({c.pool for c in options})
    rivals = sorted(
        (name for name, a in assignments.items() if a.candidate.pool in pools and by_name[name].priority >= d.priority),
        key=lambda name: -by_name[name].priority,
    )
    cheapest = options[0]
    taken = f"; pools {', '.join(pools)} are taken by {', '.join(rivals)}" if rivals else ""
    return (
        f"capacity: not enough room left for {cheapest.describe()} in its allowed pool(s) {', '.join(pools)} "
        f"after placing deployments of equal or higher priority{taken}"
    )
