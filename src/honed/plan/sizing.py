"""Sizing: for one deployment on one pool, the operating points and replica counts that meet its SLO at peak.

Pure functions over plain values. For every operating point of the profile a candidate is the smallest
replica count whose per-replica load stays at or under the autoscaling target utilization at peak (so the
autoscaler's steady state is the planned one) and whose expected p99 (see :mod:`honed.plan.queueing`) meets
the SLO. A pool is excluded, with its reason, when residency forbids it, it has no profile, no point meets
the SLO, or one replica does not fit one node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from honed.plan.document import OperatingPoint, Profile
from honed.plan.hpa import TOLERANCE
from honed.plan.queueing import p99_ms
from honed.plan.spec import Deployment, Pool

MAX_REPLICAS_SEARCHED = 10_000


@dataclass(frozen=True)
class Candidate:
    """One way to run a deployment on a pool."""

    deployment: str
    pool: str
    point: OperatingPoint
    replicas: int
    cpu: float
    memory_mb: float
    gpus: int
    expected_p99_ms: float
    replica_cost_per_hour: float
    profile: Profile
    target_utilization: float
    """The autoscaling target: the configured one, lowered to the highest utilization that still meets the SLO."""

    @property
    def cost_per_hour(self) -> float:
        return self.replicas * self.replica_cost_per_hour

    def describe(self) -> str:
        p = self.point
        return (
            f"{self.replicas} replica(s) x (batch {p.batch}, {p.threads} thread(s), {p.instances} instance(s)) "
            f"p99 {self.expected_p99_ms:.1f} ms, ${self.cost_per_hour:.2f}/h"
        )


def residency_reason(deployment: Deployment, pool: Pool) -> str | None:
    """Why residency forbids ``pool`` for ``deployment``, or None when it is allowed. Fails closed."""
    if deployment.residency is None:
        return None
    allowed = ", ".join(deployment.residency)
    if pool.jurisdiction is None:
        return f"residency [{allowed}]: pool {pool.name} has no jurisdiction label, so it serves no resident data"
    if pool.jurisdiction not in deployment.residency:
        return f"residency [{allowed}]: pool {pool.name} is in {pool.jurisdiction}"
    return None


def replica_resources(
    deployment: Deployment, pool: Pool, profile: Profile, point: OperatingPoint
) -> tuple[float, float, int]:
    """(cpu, memory_mb, gpus) one replica requests at ``point`` on ``pool``."""
    cpu = float(point.threads * point.instances)
    memory = math.ceil(profile.peak_rss_mb + deployment.memory_overhead_mb)
    gpus = 1 if pool.gpus > 0 and profile.declared else 0
    return cpu, float(memory), gpus


def replica_cost(pool: Pool, cpu: float, memory_mb: float, gpus: int) -> float:
    """A replica's share of a node's price: the largest fraction of any resource it takes."""
    share = max(cpu / pool.cpu, memory_mb / (pool.memory_gb * 1024.0), (gpus / pool.gpus) if pool.gpus else 0.0)
    return pool.cost_per_hour * share


def safe_utilization(point: OperatingPoint, slo_p99_ms: float) -> float:
    """The highest per-replica utilization (0..1) at which the expected p99 still meets the SLO."""
    if point.p99_ms > slo_p99_ms:
        return 0.0
    lo, hi = 0.0, 0.999
    if p99_ms(point, hi * point.throughput) <= slo_p99_ms:
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        if p99_ms(point, mid * point.throughput) <= slo_p99_ms:
            lo = mid
        else:
            hi = mid
    return lo


def candidates_for(deployment: Deployment, pool: Pool, profile: Profile | None) -> tuple[list[Candidate], str | None]:
    """Candidates on ``pool`` cheapest first, or ([], reason) when the pool cannot serve ``deployment``."""
    reason = residency_reason(deployment, pool)
    if reason is not None:
        return [], reason
    if profile is None:
        if pool.gpus > 0:
            return (
                [],
                f"pool {pool.name} has GPUs and declares no profile for {deployment.name} (add one under profiles:)",
            )
        return [], f"no profile for pool {pool.name}"
    target = deployment.autoscaling.target_utilization
    best_p99 = math.inf
    too_big = None
    found: list[Candidate] = []
    for point in profile.points:
        best_p99 = min(best_p99, point.p99_ms)
        if point.p99_ms > deployment.slo_p99_ms:
            continue
        cpu, memory, gpus = replica_resources(deployment, pool, profile, point)
        if cpu > pool.cpu or memory > pool.memory_gb * 1024.0 or gpus > pool.gpus:
            too_big = (cpu, memory, gpus)
            continue
        # The HPA does nothing until the ratio leaves its tolerance band, so the SLO must hold at target x 1.1.
        util = min(target, safe_utilization(point, deployment.slo_p99_ms) / (1 + TOLERANCE))
        if util <= 0.01:
            continue
        replicas = max(deployment.min_replicas, math.ceil(deployment.peak_rps / (point.throughput * util) - 1e-9))
        if replicas > MAX_REPLICAS_SEARCHED:
            continue
        found.append(
            Candidate(
                deployment=deployment.name,
                pool=pool.name,
                point=point,
                replicas=replicas,
                cpu=cpu,
                memory_mb=memory,
                gpus=gpus,
                expected_p99_ms=p99_ms(point, deployment.peak_rps / replicas),
                replica_cost_per_hour=replica_cost(pool, cpu, memory, gpus),
                profile=profile,
                target_utilization=util,
            )
        )
    if not found:
        if best_p99 > deployment.slo_p99_ms:
            return [], (
                f"on pool {pool.name} no operating point meets p99 <= {deployment.slo_p99_ms:g} ms "
                f"(fastest measured p99 is {best_p99:.1f} ms)"
            )
        if too_big is not None:
            cpu, memory, gpus = too_big
            return [], (
                f"a replica ({cpu:g} CPU, {memory:.0f} MB, {gpus} GPU) does not fit a node of pool {pool.name} "
                f"({pool.cpu:g} CPU, {pool.memory_gb:g} GB, {pool.gpus} GPU)"
            )
        return [], f"on pool {pool.name} no replica count up to {MAX_REPLICAS_SEARCHED} meets the SLO"
    found.sort(key=lambda c: (c.cost_per_hour, c.replicas, c.expected_p99_ms))
    return found, None
