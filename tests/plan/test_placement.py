"""Placement properties over random fleets (hypothesis), checked against an independent brute-force packer."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honed.plan.document import MEASURED, OperatingPoint, Profile
from honed.plan.placement import place
from honed.plan.planner import make_plan
from honed.plan.sizing import Candidate, residency_reason
from honed.plan.spec import Autoscaling, Deployment, Pool
from tests.plan.helpers import GPU_PROFILE, bench_doc, write_json

PROFILE = Profile(
    points=(OperatingPoint(1, 1, 1, 2.0, 1.5, 100.0),),
    source=MEASURED,
    origin="test",
    hardware="test",
    peak_rss_mb=100.0,
    model_load_s=0.1,
)
JURISDICTIONS = [None, "AE", "EU"]


def cand(d: str, pool: str, replicas: int, cpu: float, mem: float) -> Candidate:
    return Candidate(d, pool, PROFILE.points[0], replicas, cpu, mem, 0, 5.0, cpu * 0.1, PROFILE, 0.7)


@st.composite
def instances(
    draw: st.DrawFn, planted: bool = False
) -> tuple[list[Pool], list[Deployment], dict[str, list[Candidate]]]:
    n_pools = draw(st.integers(1, 3))
    pools = []
    for i in range(n_pools):
        pools.append(
            Pool(
                name=f"p{i}",
                count=draw(st.integers(1, 3)),
                cpu=float(draw(st.integers(2, 8))),
                memory_gb=float(draw(st.integers(1, 4))),
                cost_per_hour=float(draw(st.integers(0, 5))),
                jurisdiction=draw(st.sampled_from(JURISDICTIONS)),
            )
        )
    deployments: list[Deployment] = []
    candidates: dict[str, list[Candidate]] = {}
    load = {(p.name, k): [0.0, 0.0] for p in pools for k in range(p.count)}
    for j in range(draw(st.integers(1, 4))):
        residency = draw(
            st.one_of(st.none(), st.lists(st.sampled_from(["AE", "EU"]), min_size=1, max_size=2, unique=True))
        )
        d = Deployment(
            name=f"d{j}",
            slo_p99_ms=10.0,
            peak_rps=10.0,
            profile="x",
            priority=draw(st.integers(0, 2)),
            residency=tuple(residency) if residency else None,
            autoscaling=Autoscaling(),
        )
        deployments.append(d)
        options = []
        # Candidates on every pool, residency-forbidden ones included: placement must refuse those itself.
        for p in draw(st.lists(st.sampled_from(pools), min_size=1, max_size=2, unique_by=lambda p: p.name)):
            cpu = float(draw(st.integers(1, 4)))
            mem = float(draw(st.integers(256, 2048)))
            options.append(cand(d.name, p.name, draw(st.integers(1, 3)), cpu, mem))
        if planted:
            allowed = [c for c in options if residency_reason(d, next(p for p in pools if p.name == c.pool)) is None]
            if not allowed:
                continue
            c = allowed[0]
            pool = next(p for p in pools if p.name == c.pool)
            for _ in range(c.replicas):
                k = draw(st.integers(0, pool.count - 1))
                load[pool.name, k][0] += c.cpu
                load[pool.name, k][1] += c.memory_mb
        candidates[d.name] = options
    if planted:
        # Size every pool's nodes to hold the planted assignment: a feasible instance by construction.
        sized = []
        for p in pools:
            cpu = max([load[p.name, k][0] for k in range(p.count)] + [1.0])
            mem = max([load[p.name, k][1] for k in range(p.count)] + [1.0])
            sized.append(Pool(p.name, p.count, cpu, mem / 1024.0, p.cost_per_hour, p.jurisdiction))
        pools = sized
        deployments = [d for d in deployments if d.name in candidates]
    return pools, deployments, candidates


def packable(pools: list[Pool], chosen: list[Candidate]) -> bool:
    """Exact: can these candidates' replicas be packed onto the pools' nodes? (depth-first search)"""
    by_pool = {p.name: p for p in pools}
    items = sorted(((c.pool, c.cpu, c.memory_mb) for c in chosen for _ in range(c.replicas)), key=lambda t: -t[1])
    free = {p.name: [[p.cpu, p.memory_gb * 1024.0] for _ in range(p.count)] for p in pools}

    def dfs(i: int) -> bool:
        if i == len(items):
            return True
        pool, cpu, mem = items[i]
        seen = set()
        for node in free[pool]:
            key = (node[0], node[1])
            if key in seen or node[0] + 1e-9 < cpu or node[1] + 1e-9 < mem:
                continue
            seen.add(key)
            node[0] -= cpu
            node[1] -= mem
            if dfs(i + 1):
                node[0] += cpu
                node[1] += mem
                return True
            node[0] += cpu
            node[1] += mem
        return False

    return all(pool in by_pool for pool, _, _ in items) and dfs(0)


def feasible(pools: list[Pool], deployments: list[Deployment], candidates: dict[str, list[Candidate]]) -> bool:
    by_pool = {p.name: p for p in pools}
    options = [[c for c in candidates[d.name] if residency_reason(d, by_pool[c.pool]) is None] for d in deployments]
    return any(packable(pools, list(combo)) for combo in itertools.product(*options))


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(instances())
def test_residency_and_capacity_always_hold(inst: tuple) -> None:
    pools, deployments, candidates = inst
    result = place(pools, deployments, candidates, time_limit_s=5)
    by_pool = {p.name: p for p in pools}
    by_dep = {d.name: d for d in deployments}
    used = {(p.name, k): [0.0, 0.0] for p in pools for k in range(p.count)}
    for name, a in result.assignments.items():
        pool = by_pool[a.candidate.pool]
        d = by_dep[name]
        if d.residency is not None:
            assert pool.jurisdiction is not None and pool.jurisdiction in d.residency
        assert sum(a.nodes.values()) == a.candidate.replicas
        for k, r in a.nodes.items():
            used[pool.name, k][0] += r * a.candidate.cpu
            used[pool.name, k][1] += r * a.candidate.memory_mb
    for (pool_name, _), (cpu, mem) in used.items():
        assert cpu <= by_pool[pool_name].cpu + 1e-6
        assert mem <= by_pool[pool_name].memory_gb * 1024 + 1e-6
    assert set(result.assignments) | set(result.unplaced) == set(by_dep)


@SETTINGS
@given(instances(planted=True))
def test_a_feasible_instance_is_placed_whole(inst: tuple) -> None:
    pools, deployments, candidates = inst
    result = place(pools, deployments, candidates, time_limit_s=5)
    assert not result.unplaced, result.unplaced


@SETTINGS
@given(instances())
def test_priority_order_is_respected(inst: tuple) -> None:
    """An unplaced deployment could not have fit beside every placed one of equal or higher priority."""
    pools, deployments, candidates = inst
    result = place(pools, deployments, candidates, time_limit_s=5)
    by_dep = {d.name: d for d in deployments}
    for name in result.unplaced:
        d = by_dep[name]
        keep = [by_dep[n] for n, a in result.assignments.items() if by_dep[n].priority >= d.priority]
        fixed = {n: [result.assignments[n].candidate] for n in (k.name for k in keep)}
        assert not feasible(pools, [*keep, d], {**fixed, d.name: candidates[d.name]})


def test_capacity_short_places_higher_priority_and_says_why() -> None:
    pools = [Pool("p0", 1, 4.0, 8.0, 1.0, "AE")]
    deps = [
        Deployment("low", 10.0, 10.0, profile="x", priority=0),
        Deployment("high", 10.0, 10.0, profile="x", priority=2),
    ]
    cands = {"low": [cand("low", "p0", 2, 2.0, 512)], "high": [cand("high", "p0", 3, 1.0, 512)]}
    result = place(pools, deps, cands, time_limit_s=5)
    assert set(result.assignments) == {"high"}
    assert "capacity" in result.unplaced["low"] and "high" in result.unplaced["low"]


def test_plan_with_residency_gpu_declared_profile_and_unsatisfiable_residency(tmp_path: Path) -> None:
    bench = write_json(tmp_path / "bench.json", bench_doc())
    pools = [
        Pool("cpu-ae", 2, 16.0, 64.0, 0.68, "AE", "ae-central-1"),
        Pool("gpu-eu", 2, 32.0, 256.0, 0.98, "EU", "eu-west-1", gpus=1, gpu_type="L4", profiles={"bulk": GPU_PROFILE}),
        Pool("cpu-x", 4, 64.0, 256.0, 0.01),  # unlabelled and cheap: must never take resident data
    ]
    deps = [
        Deployment("fraud", 20.0, 2000.0, profile=str(bench), priority=2, residency=("AE",), model_load_s=0.5),
        Deployment("bulk", 50.0, 6000.0, profile=str(bench), priority=1, residency=("EU",), model_load_s=0.5),
        Deployment("saudi", 50.0, 10.0, profile=str(bench), priority=1, residency=("SA",), model_load_s=0.5),
    ]
    plan = make_plan(pools, deps, time_limit_s=5)
    fraud, bulk = plan.placement("fraud"), plan.placement("bulk")
    assert fraud.pool == "cpu-ae" and fraud.jurisdiction == "AE"
    assert bulk.pool == "gpu-eu" and bulk.profile_source == "declared, not measured"
    assert bulk.resources.gpus == 1
    assert any("declared, not measured" in r for r in bulk.reasons)
    assert any("cpu-x" in r and "no jurisdiction label" in r for r in fraud.reasons)
    (unplaced,) = plan.unplaced
    assert unplaced.deployment == "saudi" and "no pool satisfies residency [SA]" in unplaced.reason
    assert plan.decisions["saudi"].chosen == f"unplaced: {unplaced.reason}"
    for p in plan.placements:
        assert p.expected_p99_ms <= p.slo_p99_ms
        assert p.replicas * p.autoscaling.capacity_per_replica_rps * p.autoscaling.target_utilization >= p.peak_rps
        assert plan.decisions[p.deployment].chosen == p.reasons[0]


def test_slo_no_point_meets_is_reported(tmp_path: Path) -> None:
    bench = write_json(tmp_path / "bench.json", bench_doc())
    pools = [Pool("cpu", 1, 16.0, 64.0, 0.5)]
    plan = make_plan(pools, [Deployment("fast", 1.0, 10.0, profile=str(bench), model_load_s=0.1)], time_limit_s=5)
    assert not plan.placements
    assert "no operating point meets p99 <= 1 ms" in plan.unplaced[0].reason


@pytest.mark.parametrize("jurisdiction", [None, "EU"])
def test_only_forbidden_pools_means_unplaced(tmp_path: Path, jurisdiction: str | None) -> None:
    bench = write_json(tmp_path / "bench.json", bench_doc())
    pools = [Pool("cpu", 4, 64.0, 256.0, 0.01, jurisdiction)]
    dep = Deployment("ae", 50.0, 10.0, profile=str(bench), residency=("AE",), model_load_s=0.1)
    plan = make_plan(pools, [dep], time_limit_s=5)
    assert not plan.placements and "residency [AE]" in plan.unplaced[0].reason
