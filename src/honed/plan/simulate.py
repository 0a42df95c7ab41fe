"""Trace simulation: replay a load trace through the planned replicas under an autoscaling policy.

Each reconcile (every ``sync_s``, 15 s like the HPA controller) the policy sees the pods' utilization and
the load, and sets a replica count; new replicas serve only after the provisioning lead (measured model-load
time + pod start). Between reconciles a fluid queue carries any backlog: each ready replica serves its
measured items/s; latency is the queueing-model p99 (:mod:`honed.plan.queueing`) plus the time to drain
the backlog. Per policy the summary gives SLO-violation minutes (a minute whose worst p99 breaks the SLO),
replica-hours (starting replicas count: they are paid for), cost, and mean slack (SLO - p99, in ms): a
:class:`PolicySummary`.

Policies: ``hpa`` (reactive, Kubernetes semantics), ``predictive`` (forecast + reactive + anomaly freeze),
``static`` (the planned peak replica count, always on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from honed.errors import InvalidArgument
from honed.fields import Document
from honed.plan.document import OperatingPoint, Placement
from honed.plan.forecast import LoadForecaster
from honed.plan.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HorizontalPodAutoscaler,
    HPASpec,
    PodMetric,
    ScalingRules,
)
from honed.plan.predictive import AnomalyEvent, PredictiveAutoscaler, replicas_for_rate
from honed.plan.queueing import p99_ms
from honed.plan.traces import Trace

POLICIES = ("hpa", "predictive", "static")
LATENCY_CAP_MS = 60_000.0


@dataclass(frozen=True)
class SimConfig:
    """What the simulator needs from one placement."""

    deployment: str
    point: OperatingPoint
    slo_p99_ms: float
    lead_s: float
    min_replicas: int
    max_replicas: int
    target_utilization: float
    replica_cost_per_hour: float
    scale_up_window_s: float = 0.0
    scale_down_window_s: float = 300.0
    max_extra_fraction: float = 1.0
    max_extra_cost_per_hour: float | None = None
    season_s: float = 86400.0
    profile_source: str = "measured"
    margin_z: float = 3.0
    freeze_s: float = 600.0
    hpa_scale_down_window_s: float | None = None
    """The ``hpa`` policy's scale-down window when it differs (a predictive plan's window is shorter than the
    300 s Kubernetes default an HPA alone would run with)."""

    @classmethod
    def from_placement(cls, placement: Placement) -> SimConfig:
        auto = placement.autoscaling
        return cls(
            deployment=placement.deployment,
            point=placement.operating_point(),
            slo_p99_ms=placement.slo_p99_ms,
            lead_s=auto.provisioning_lead_s,
            min_replicas=auto.min_replicas,
            max_replicas=auto.max_replicas,
            target_utilization=auto.target_utilization,
            replica_cost_per_hour=auto.replica_cost_per_hour,
            scale_up_window_s=auto.scale_up_window_s,
            scale_down_window_s=auto.scale_down_window_s,
            max_extra_fraction=auto.max_extra_fraction,
            max_extra_cost_per_hour=auto.max_extra_cost_per_hour,
            season_s=auto.season_s,
            profile_source=placement.profile.source,
            hpa_scale_down_window_s=300.0 if auto.predictive else None,
        )

    def hpa_spec(self, policy: str = "predictive") -> HPASpec:
        down = self.scale_down_window_s
        if policy == "hpa" and self.hpa_scale_down_window_s is not None:
            down = self.hpa_scale_down_window_s
        return HPASpec(
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            target_utilization=self.target_utilization,
            scale_up=ScalingRules(self.scale_up_window_s, DEFAULT_SCALE_UP.policies),
            scale_down=ScalingRules(down, DEFAULT_SCALE_DOWN.policies),
        )


@dataclass(frozen=True)
class PolicySummary(Document):
    """How one policy did over a trace (the minutes after the warm-up): SLO, replica-hours, cost, slack."""

    json_unless_none = ("anomalies", "anomaly_events")

    policy: str
    minutes: int
    slo_p99_ms: float
    slo_violation_minutes: int
    """Minutes whose worst p99 broke the SLO."""
    replica_hours: float
    """Starting replicas included: they are paid for."""
    cost: float
    mean_slack_ms: float
    max_p99_ms: float
    max_replicas: int
    scale_events: int
    provisioning_lead_s: float
    profile_source: str
    anomalies: int | None = None
    """Predictive policy only: anomalies that froze scale-in."""
    anomaly_events: tuple[AnomalyEvent, ...] | None = None
    """Predictive policy only: the first 20 of them."""


@dataclass(frozen=True)
class SimResult:
    """One policy's run over a trace: per reconcile, the load, replicas (starting included), ready ones, p99."""

    policy: str
    times: np.ndarray
    load: np.ndarray
    replicas: np.ndarray
    ready: np.ndarray
    p99: np.ndarray
    summary: PolicySummary


def simulate(config: SimConfig, trace: Trace, policy: str, *, sync_s: float = 15.0, warmup_s: float = 0.0) -> SimResult:
    """Replay ``trace`` under ``policy``; minutes before ``warmup_s`` are simulated but not counted."""
    if policy not in POLICIES:
        raise InvalidArgument(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    point = config.point
    end = float(trace.times[-1]) + trace.step_s
    steps = np.arange(float(trace.times[0]), end, sync_s)
    load = np.interp(steps, trace.times, trace.rates)
    hpa = HorizontalPodAutoscaler(config.hpa_spec(policy))
    predictive = None
    if policy == "predictive":
        predictive = PredictiveAutoscaler(
            hpa=hpa,
            capacity_rps=point.throughput,
            lead_s=config.lead_s,
            replica_cost_per_hour=config.replica_cost_per_hour,
            max_extra_fraction=config.max_extra_fraction,
            max_extra_cost_per_hour=config.max_extra_cost_per_hour,
            sync_s=sync_s,
            margin_z=config.margin_z,
            freeze_s=config.freeze_s,
            forecaster=LoadForecaster(season_s=config.season_s, bucket_s=min(300.0, config.season_s / 48)),
        )
    if policy == "static":
        start_replicas = config.max_replicas
    else:
        start = replicas_for_rate(float(load[0]), point.throughput, config.target_utilization)
        start_replicas = min(config.max_replicas, max(config.min_replicas, start))
    # Each pod: (ready_at, metrics_from); started before the trace, so ready with metrics.
    pods: list[tuple[float, float]] = [(-math.inf, -math.inf)] * start_replicas
    backlog = 0.0
    n = len(steps)
    out_replicas = np.zeros(n, dtype=int)
    out_ready = np.zeros(n, dtype=int)
    out_p99 = np.zeros(n)
    for i, (now, rate) in enumerate(zip(steps, load, strict=True)):
        ready = sum(1 for r, _ in pods if r <= now)
        capacity = ready * point.throughput
        backlog = max(0.0, backlog + (rate - capacity) * sync_s)
        if ready == 0:
            p99 = LATENCY_CAP_MS
        else:
            per_pod = min(rate / ready, 0.98 * point.throughput)
            p99 = min(LATENCY_CAP_MS, p99_ms(point, per_pod) + 1000.0 * backlog / capacity)
        out_replicas[i], out_ready[i], out_p99[i] = len(pods), ready, p99
        if policy == "static":
            continue
        metrics = [
            PodMetric(ready=r <= now, utilization=(min(1.0, rate / ready / point.throughput) if m <= now else None))
            for r, m in pods
        ]
        if predictive is not None:
            decision = predictive.step(now, len(pods), metrics, rate, p99)
        else:
            decision = hpa.step(now, len(pods), metrics)
        if decision.desired > len(pods):
            ready_at = now + config.lead_s
            pods = pods + [(ready_at, ready_at + sync_s)] * (decision.desired - len(pods))
        elif decision.desired < len(pods):
            pods = sorted(pods)[: decision.desired]  # the newest (least ready) pods go first
    summary = _summary(config, policy, steps, out_replicas, out_p99, sync_s, warmup_s, predictive)
    return SimResult(policy, steps, load, out_replicas, out_ready, out_p99, summary)


def _summary(
    config: SimConfig,
    policy: str,
    times: np.ndarray,
    replicas: np.ndarray,
    p99: np.ndarray,
    sync_s: float,
    warmup_s: float,
    predictive: PredictiveAutoscaler | None,
) -> PolicySummary:
    counted = times >= times[0] + warmup_s
    minute = ((times - times[0]) // 60).astype(int)
    worst: dict[int, float] = {}
    for m, p, c in zip(minute, p99, counted, strict=True):
        if c:
            worst[m] = max(worst.get(m, 0.0), float(p))
    worst_values = np.array(list(worst.values()))
    replica_hours = float(replicas[counted].sum() * sync_s / 3600.0)
    events = None
    if predictive is not None:
        events = tuple(e for e in predictive.events if e.t >= times[0] + warmup_s)
    return PolicySummary(
        policy=policy,
        minutes=len(worst),
        slo_p99_ms=config.slo_p99_ms,
        slo_violation_minutes=int((worst_values > config.slo_p99_ms).sum()),
        replica_hours=round(replica_hours, 3),
        cost=round(replica_hours * config.replica_cost_per_hour, 4),
        mean_slack_ms=round(float((config.slo_p99_ms - worst_values).mean()), 3),
        max_p99_ms=round(float(worst_values.max()), 3),
        max_replicas=int(replicas.max()),
        scale_events=int((np.diff(replicas) != 0).sum()),
        provisioning_lead_s=config.lead_s,
        profile_source=config.profile_source,
        anomalies=None if events is None else len(events),
        anomaly_events=None if events is None else events[:20],
    )
