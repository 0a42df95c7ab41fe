"""Reactive autoscaling with the Kubernetes HorizontalPodAutoscaler's semantics (autoscaling/v2).

What this reproduces from the HPA controller (``replica_calculator.go``, ``horizontal.go``):

* desired = ceil(ready pods x mean utilization / target); no change while |ratio - 1| <= tolerance (0.1);
* missing metrics are handled conservatively: on a scale-down they count as 100% of the request (or the
  target if higher), on a scale-up as 0%; not-ready pods count as 0% on a scale-up; if that flips the
  direction, or lands within the tolerance, nothing changes;
* several metrics: the largest proposal wins; an external metric whose value is a replica count with target
  average value 1 proposes that count (with the same tolerance);
* stabilization windows: scale-up takes the smallest recommendation of the scale-up window, scale-down the
  largest of the scale-down window (defaults 0 s and 300 s);
* rate limits: policies (Pods or Percent per period), ``selectPolicy`` Max/Min/Disabled, counted against
  the scale events of each policy's period; then min/max replicas.

Time comes in as ``now`` (seconds, any monotonic origin), so it runs under a simulated clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from honed.errors import InvalidArgument

TOLERANCE = 0.1


@dataclass(frozen=True)
class ScalingPolicy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.kind not in ("Pods", "Percent") or self.value <= 0 or self.period_s <= 0:
            raise InvalidArgument(f"bad scaling policy {self}: kind Pods|Percent, value > 0, period > 0")


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_s: float
    policies: tuple[ScalingPolicy, ...]
    select_policy: str = "Max"  # "Max", "Min" or "Disabled"


DEFAULT_SCALE_UP = ScalingRules(0.0, (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15),))


@dataclass(frozen=True)
class HPASpec:
    min_replicas: int
    max_replicas: int
    target_utilization: float
    tolerance: float = TOLERANCE
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise InvalidArgument(
                f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}"
            )
        if not self.target_utilization > 0:
            raise InvalidArgument("target_utilization must be > 0")


@dataclass(frozen=True)
class PodMetric:
    """One pod as the HPA sees it: ``utilization`` is usage / request (None: no metric yet)."""

    ready: bool
    utilization: float | None


def replicas_for_utilization(
    current: int, target: float, pods: Sequence[PodMetric], tolerance: float = TOLERANCE
) -> int:
    """The replica count the resource-metric calculation proposes (``GetResourceReplicas``)."""
    ready = [p.utilization for p in pods if p.utilization is not None and p.ready]
    unready = [p for p in pods if p.utilization is not None and not p.ready]
    missing = [p for p in pods if p.utilization is None]
    if not ready:
        return current  # no usable metrics: the controller keeps the current scale
    usage = sum(ready) / len(ready) / target
    scale_up_with_unready = bool(unready) and usage > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - usage) <= tolerance:
            return current
        return math.ceil(usage * len(ready))
    values = [float(v) for v in ready]
    if missing:
        if usage < 1.0:
            values += [max(1.0, target)] * len(missing)
        elif usage > 1.0:
            values += [0.0] * len(missing)
    if scale_up_with_unready:
        values += [0.0] * len(unready)
    new_usage = sum(values) / len(values) / target
    if abs(1.0 - new_usage) <= tolerance or (usage < 1.0 < new_usage) or (usage > 1.0 > new_usage):
        return current
    proposed = math.ceil(new_usage * len(values))
    if (new_usage < 1.0 and proposed > current) or (new_usage > 1.0 and proposed < current):
        return current
    return proposed


def replicas_for_external(current: int, value: float, target_average: float = 1.0, tolerance: float = TOLERANCE) -> int:
    """An external metric with an AverageValue target: ceil(value / target), unless within the tolerance."""
    if current > 0 and abs(value / (target_average * current) - 1.0) <= tolerance:
        return current
    return math.ceil(value / target_average)


@dataclass
class Decision:
    desired: int
    proposed: int
    stabilized: int
    reason: str


@dataclass
class HorizontalPodAutoscaler:
    """One HPA object's controller state: recommendations and scale events, advanced by :meth:`step`."""

    spec: HPASpec
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def step(
        self,
        now: float,
        current: int,
        pods: Sequence[PodMetric],
        external: float | None = None,
        *,
        allow_scale_in: bool = True,
    ) -> Decision:
        """One reconcile: the replica count to set now. ``external`` is an extra metric's replica proposal;
        ``allow_scale_in`` False (an anomaly freeze) holds the count at ``current`` or above."""
        proposed = replicas_for_utilization(current, self.spec.target_utilization, pods, self.spec.tolerance)
        reason = "utilization"
        if external is not None:
            ext = replicas_for_external(current, external, tolerance=self.spec.tolerance)
            if ext > proposed:
                proposed, reason = ext, "external metric"
        stabilized = self._stabilize(now, current, proposed)
        desired = self._rate_limit(now, current, stabilized)
        if desired < current and not allow_scale_in:
            desired, reason = current, "scale-in frozen"
        if desired != current:
            (self.up_events if desired > current else self.down_events).append((now, abs(desired - current)))
        return Decision(desired, proposed, stabilized, reason)

    def _stabilize(self, now: float, current: int, proposed: int) -> int:
        up_cut = now - self.spec.scale_up.stabilization_window_s
        down_cut = now - self.spec.scale_down.stabilization_window_s
        up, down = proposed, proposed
        for ts, rec in self.recommendations:
            if ts > up_cut:
                up = min(up, rec)
            if ts > down_cut:
                down = max(down, rec)
        keep = max(self.spec.scale_up.stabilization_window_s, self.spec.scale_down.stabilization_window_s)
        self.recommendations = [(ts, r) for ts, r in self.recommendations if ts > now - keep]
        self.recommendations.append((now, proposed))
        recommendation = current
        if recommendation < up:
            recommendation = up
        if recommendation > down:
            recommendation = down
        return recommendation

    def _changes(self, now: float, period: float, events: list[tuple[float, int]]) -> int:
        return sum(change for ts, change in events if ts > now - period)

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        lo, hi = self.spec.min_replicas, self.spec.max_replicas
        if desired > current:
            limit = self._limit(now, current, self.spec.scale_up, up=True)
            hi = min(hi, max(limit, current))
        elif desired < current:
            limit = self._limit(now, current, self.spec.scale_down, up=False)
            lo = max(lo, min(limit, current))
        if desired < lo:
            return lo
        if desired > hi:
            return hi
        return desired

    def _limit(self, now: float, current: int, rules: ScalingRules, *, up: bool) -> int:
        if rules.select_policy == "Disabled":
            return current
        pick_max = (rules.select_policy != "Min") == up  # scale-up Max -> largest; scale-down Max -> smallest
        result: int | None = None
        for policy in rules.policies:
            start = (
                current
                - self._changes(now, policy.period_s, self.up_events)
                + self._changes(now, policy.period_s, self.down_events)
            )
            if policy.kind == "Pods":
                proposed = start + policy.value if up else start - policy.value
            elif up:
                proposed = math.ceil(start * (1 + policy.value / 100))
            else:
                proposed = int(start * (1 - policy.value / 100))
            result = proposed if result is None else max(result, proposed) if pick_max else min(result, proposed)
        return current if result is None else result
