"""The HPA's semantics against cases computed by hand from the Kubernetes algorithm."""

from __future__ import annotations

from honed.plan.hpa import (
    HorizontalPodAutoscaler,
    HPASpec,
    PodMetric,
    ScalingPolicy,
    ScalingRules,
    replicas_for_external,
    replicas_for_utilization,
)


def ready(*utils: float) -> list[PodMetric]:
    return [PodMetric(True, u) for u in utils]


def test_desired_is_ceil_of_current_times_ratio() -> None:
    # 3 pods at 90% with a 60% target: ratio 1.5, ceil(3 * 1.5) = ceil(4.5) = 5
    assert replicas_for_utilization(3, 0.6, ready(0.9, 0.9, 0.9)) == 5
    # 4 pods at 20% with a 50% target: ratio 0.4, ceil(1.6) = 2
    assert replicas_for_utilization(4, 0.5, ready(0.2, 0.2, 0.2, 0.2)) == 2


def test_tolerance_band_keeps_the_count() -> None:
    # ratio 0.65 / 0.6 = 1.083: within 10%, no change; 0.67 / 0.6 = 1.117: out of the band, ceil(4.47) = 5
    assert replicas_for_utilization(4, 0.6, ready(0.65, 0.65, 0.65, 0.65)) == 4
    assert replicas_for_utilization(4, 0.6, ready(0.67, 0.67, 0.67, 0.67)) == 5
    assert replicas_for_utilization(4, 0.6, ready(0.55, 0.55, 0.55, 0.55)) == 4  # 0.917: within


def test_missing_metrics_count_as_zero_on_scale_up() -> None:
    # ready 1.0, 1.0 with target 0.5: ratio 2 -> scale up; missing pod counts 0: (1+1+0)/3/0.5 = 1.333 -> ceil(4) = 4
    pods = [*ready(1.0, 1.0), PodMetric(False, None)]
    assert replicas_for_utilization(3, 0.5, pods) == 4


def test_missing_metrics_count_as_full_on_scale_down() -> None:
    # ready 0.1, 0.1 with target 0.5: ratio 0.2 -> scale down; missing counts 100%: (0.1+0.1+1)/3/0.5 = 0.8,
    # ceil(0.8 * 3) = 3 = current: no scale-down (without the missing pod it would have been ceil(0.4) = 1)
    pods = [*ready(0.1, 0.1), PodMetric(True, None)]
    assert replicas_for_utilization(3, 0.5, pods) == 3
    assert replicas_for_utilization(2, 0.5, ready(0.1, 0.1)) == 1


def test_unready_pods_count_as_zero_on_scale_up_and_can_cancel_it() -> None:
    # ready 1.0 at target 0.5 (ratio 2); the unready pod counts 0: 1/2/0.5 = 1.0 -> within tolerance, keep 2
    pods = [PodMetric(True, 1.0), PodMetric(False, 0.9)]
    assert replicas_for_utilization(2, 0.5, pods) == 2
    # ready 1.0, 1.0, unready one: (1+1+0)/3/0.5 = 1.333 -> ceil(4.0) = 4
    assert replicas_for_utilization(3, 0.5, [*ready(1.0, 1.0), PodMetric(False, 0.9)]) == 4


def test_no_metrics_keeps_current() -> None:
    assert replicas_for_utilization(3, 0.5, [PodMetric(False, None)] * 3) == 3


def test_external_metric_proposes_its_value_with_tolerance() -> None:
    assert replicas_for_external(4, 10.0) == 10
    assert replicas_for_external(10, 10.5) == 10  # 5% off: within tolerance


def spec(**kw: object) -> HPASpec:
    return HPASpec(min_replicas=1, max_replicas=100, target_utilization=0.5, **kw)  # type: ignore[arg-type]


def test_scale_down_waits_for_the_stabilization_window() -> None:
    hpa = HorizontalPodAutoscaler(spec())
    assert hpa.step(0, 10, ready(*[0.5] * 10)).desired == 10  # at target: recommendation 10 recorded at t=0
    # Load drops: the raw proposal is 2 but the window still holds the recommendation 10 from t=0.
    assert hpa.step(15, 10, ready(*[0.1] * 10)).desired == 10
    assert hpa.step(299, 10, ready(*[0.1] * 10)).desired == 10
    # At t=300 the t=0 recommendation has left the window (the cut-off is strict); the others say 2.
    assert hpa.step(300, 10, ready(*[0.1] * 10)).desired == 2


def test_scale_up_rate_is_limited_by_policies() -> None:
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, 0.05))
    # 2 pods at 100% with target 5%: proposal 40. Limits: Pods 4 -> 6, Percent 100 -> 4; Max picks 6.
    decision = hpa.step(0, 2, ready(1.0, 1.0))
    assert (decision.proposed, decision.desired) == (40, 6)
    # Within the same 15 s period the period started at 2: limits stay 6 (Pods) and 4 (Percent).
    assert hpa.step(10, 6, ready(*[1.0] * 6)).desired == 6
    # A new period: from 6, Pods -> 10, Percent -> 12: 12.
    assert hpa.step(30, 6, ready(*[1.0] * 6)).desired == 12


def test_select_policy_min_and_disabled() -> None:
    up_min = ScalingRules(0.0, (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)), "Min")
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, 0.05, scale_up=up_min))
    assert hpa.step(0, 10, ready(*[1.0] * 10)).desired == 14  # min(10 + 4, 20)
    off = ScalingRules(0.0, (ScalingPolicy("Pods", 4, 15),), "Disabled")
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, 0.05, scale_up=off))
    assert hpa.step(0, 10, ready(*[1.0] * 10)).desired == 10


def test_scale_down_percent_policy_and_min_replicas() -> None:
    down = ScalingRules(0.0, (ScalingPolicy("Percent", 50, 60),))
    hpa = HorizontalPodAutoscaler(HPASpec(3, 100, 0.5, scale_down=down))
    # 10 pods at 5%: proposal ceil(10 * 0.1) = 1; 50% per minute: int(10 * 0.5) = 5
    assert hpa.step(0, 10, ready(*[0.05] * 10)).desired == 5
    # Same minute: the period started at 10 (5 removed): still limited to 5
    assert hpa.step(30, 5, ready(*[0.05] * 5)).desired == 5
    # Next minute: from 5, int(2.5) = 2, but min_replicas is 3
    assert hpa.step(61, 5, ready(*[0.05] * 5)).desired == 3


def test_freeze_blocks_scale_in_only() -> None:
    hpa = HorizontalPodAutoscaler(
        HPASpec(1, 100, 0.5, scale_down=ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15),)))
    )
    assert hpa.step(0, 10, ready(*[0.1] * 10), allow_scale_in=False).desired == 10
    assert not hpa.down_events
    assert hpa.step(15, 2, ready(1.0, 1.0), allow_scale_in=False).desired == 4
