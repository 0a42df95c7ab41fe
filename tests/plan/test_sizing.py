"""Where the autoscaling target comes from: the SLO's utilization ceiling, less the HPA's tolerance band."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from honed.plan.document import MEASURED, OperatingPoint, Profile
from honed.plan.hpa import TOLERANCE
from honed.plan.queueing import p99_ms
from honed.plan.sizing import candidates_for, safe_utilization
from honed.plan.spec import Autoscaling, Deployment, Pool

POOL = Pool("cpu", 4, 16.0, 64.0, 0.68, pod_start_s=30.0)


def profile(point: OperatingPoint, model_load_s: float = 1.0) -> Profile:
    return Profile((point,), MEASURED, "test", "test", 100.0, model_load_s)


def deployment(slo_ms: float, configured: float = 0.7) -> Deployment:
    return Deployment("d", slo_ms, 100.0, autoscaling=Autoscaling(target_utilization=configured))


points = st.builds(
    OperatingPoint,
    batch=st.sampled_from([1, 4, 16]),
    threads=st.integers(1, 4),
    instances=st.integers(1, 4),
    p99_ms=st.floats(1.0, 200.0),
    mean_ms=st.just(1.0),
    throughput=st.floats(5.0, 2000.0),
)


@settings(max_examples=60, deadline=None)
@given(point=points, slack=st.floats(1.05, 20.0), configured=st.floats(0.05, 1.0))
def test_target_is_the_slo_ceiling_over_the_tolerance_and_ignores_the_lead(
    point: OperatingPoint, slack: float, configured: float
) -> None:
    slo = point.p99_ms * slack
    d = deployment(slo, configured)
    ceiling = safe_utilization(point, slo)
    cands, reason = candidates_for(d, POOL, profile(point))
    expected = min(configured, ceiling / (1 + TOLERANCE))
    if expected <= 0.01:
        assert cands == [] and reason is not None
        return
    (c,) = cands
    assert c.target_utilization == expected
    # The top of the HPA's band (target x 1.1) still meets the SLO: no headroom beyond the band is kept.
    assert p99_ms(point, c.target_utilization * (1 + TOLERANCE) * point.throughput) <= slo + 1e-6
    # The provisioning lead (model load + pod start) plays no part in the target.
    slow_pool = dataclasses.replace(POOL, pod_start_s=600.0)
    (slow,) = candidates_for(d, slow_pool, profile(point, model_load_s=300.0))[0]
    assert slow.target_utilization == c.target_utilization and slow.replicas == c.replicas


def test_magika_point_target_is_the_queueing_ceiling() -> None:
    # The operating point of the benchmark's placement (examples/profiles/magika-cpu.json, batch 1, 1 thread).
    point = OperatingPoint(1, 1, 1, 56.24, 39.53, 25.03)
    ceiling = safe_utilization(point, 250.0)
    assert 0.29 < ceiling < 0.31
    assert abs(p99_ms(point, ceiling * point.throughput) - 250.0) < 0.5
    (c,) = candidates_for(deployment(250.0), POOL, profile(point))[0]
    assert abs(c.target_utilization - ceiling / 1.1) < 1e-12
    # Any reactive target above it puts the top of its band over the SLO.
    assert p99_ms(point, 0.3 * (1 + TOLERANCE) * point.throughput) > 250.0
