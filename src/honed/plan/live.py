"""Live figures: what the serving fleet showed in Prometheus, blended into a plan made from measured profiles.

:func:`observe` reads, per model (the ``model`` label is the deployment's name, as ``honed deploy`` serves it),
the request rate over the window (its series, peak and mean), the p99 latency over the whole window from the
histogram, and the busy CPU-seconds per second of each replica. :func:`live_plan` then

* raises a deployment's ``peak_rps`` to the peak production showed when that is higher (the plan sizes for it);
* gives a predictive placement its load history: the CSV's rows, then Prometheus' samples after them
  (Prometheus alone when the deployment names no CSV);
* records per figure whether it was measured on a bench machine, declared, or observed in production
  (:class:`~honed.plan.document.LiveFigures` on each placement), and flags a profile figure production misses
  by more than ``margin`` either way, with a reason on the placement.

:func:`observe_rates` and :func:`merged_history` are the same load history for the forecast server.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from honed.errors import InvalidArgument
from honed.plan.document import DECLARED, OBSERVED, Figure, LiveFigures, Placement, Plan
from honed.plan.prometheus import (
    PrometheusReader,
    Series,
    cpu_per_replica_query,
    latency_quantile_query,
    process_cpu_per_replica_query,
)
from honed.serve.contract import BUSY_SECONDS, PROCESS_CPU

DEFAULT_MARGIN = 0.5
"""A profile figure that production misses by more than 50% either way is contradicted."""


@dataclass(frozen=True)
class Observation:
    """One model's figures over a window of production, as Prometheus answered them (None: no samples)."""

    model: str
    times: tuple[float, ...]
    rates: tuple[float, ...]
    """Requests per second, all versions together, at each step of the window."""
    p99_ms: float | None
    cpu_per_replica: float | None
    """CPU-seconds per second of a replica, the mean over replicas."""
    cpu_metric: str | None = None
    """The series ``cpu_per_replica`` came from: the process collector's ``process_cpu_seconds_total``, or, where no
    replica of the model exports it, ``honed_instance_busy_seconds_total`` (model runs only, one thread each)."""

    @property
    def peak_rps(self) -> float | None:
        return max(self.rates) if self.rates else None

    @property
    def mean_rps(self) -> float | None:
        return statistics.fmean(self.rates) if self.rates else None


def _by_model(series: list[Series]) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        out[s.model].append(s)
    return out


def _summed(series: list[Series]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The series added up at each timestamp (versions of one model)."""
    total: dict[float, float] = defaultdict(float)
    for s in series:
        for t, v in zip(s.times, s.values, strict=True):
            total[t] += v
    times = tuple(sorted(total))
    return times, tuple(total[t] for t in times)


def observe(reader: PrometheusReader, models: Sequence[str], since_s: float) -> dict[str, Observation]:
    """Each of ``models``' figures over the last ``since_s`` seconds."""
    _, end, _ = reader.window(since_s)
    rates = _by_model(reader.request_rates(since_s, end=end))
    p99 = _by_model(reader.query(latency_quantile_query(0.99, since_s), at=end))
    process = _by_model(reader.query(process_cpu_per_replica_query(since_s), at=end))
    busy = _by_model(reader.query(cpu_per_replica_query(since_s), at=end))
    out = {}
    for name in models:
        times, values = _summed(rates.get(name, []))
        p99_values = [v for s in p99.get(name, []) for v in s.values]
        cpu_values = [v for s in process.get(name, []) for v in s.values]
        cpu_metric = PROCESS_CPU.name if cpu_values else None
        if not cpu_values:
            cpu_values = [v for s in busy.get(name, []) for v in s.values]
            cpu_metric = BUSY_SECONDS.name if cpu_values else None
        out[name] = Observation(
            model=name,
            times=times,
            rates=values,
            p99_ms=max(p99_values) * 1000.0 if p99_values else None,
            cpu_per_replica=statistics.fmean(cpu_values) if cpu_values else None,
            cpu_metric=cpu_metric,
        )
    return out


def merged_history(
    csv: str | Path | None, live_times: Sequence[float], live_rates: Sequence[float]
) -> tuple[list[float], list[float]] | None:
    """The CSV's rows (when given) followed by the live samples after its last row; None: under two rows."""
    from honed.plan.predictive import load_history

    times: list[float] = []
    rates: list[float] = []
    if csv is not None:
        times, rates = load_history(csv)
    for t, r in zip(live_times, live_rates, strict=True):
        if not times or t > times[-1]:
            times.append(t)
            rates.append(r)
    return (times, rates) if len(times) >= 2 else None


def observe_rates(reader: PrometheusReader, model: str, since_s: float) -> tuple[list[float], list[float]]:
    """A model's request rate (all versions) over the last ``since_s`` from Prometheus: (times, requests/s)."""
    times, rates = _summed(reader.request_rates(since_s, model=model))
    return list(times), list(rates)


def _figures(p: Placement, declared_peak: float, obs: Observation, margin: float) -> tuple[Figure, ...]:
    point = p.operating_point()
    peak = obs.peak_rps
    rate = Figure(
        "peak_rps",
        max(declared_peak, peak or 0.0),
        OBSERVED if peak is not None and peak > declared_peak else DECLARED,
        declared_peak,
        peak,
    )
    p99 = Figure(
        "p99_ms",
        obs.p99_ms if obs.p99_ms is not None else point.p99_ms,
        OBSERVED if obs.p99_ms is not None else p.profile.source,
        point.p99_ms,
        obs.p99_ms,
        obs.p99_ms is not None and point.p99_ms > 0 and abs(obs.p99_ms / point.p99_ms - 1.0) > margin,
    )
    cpu = Figure(
        "cpu_per_replica",
        obs.cpu_per_replica if obs.cpu_per_replica is not None else p.resources.cpu,
        OBSERVED if obs.cpu_per_replica is not None else DECLARED,
        p.resources.cpu,
        obs.cpu_per_replica,
        # Busier than the CPUs the replica requests: the profile under-states what the model costs.
        obs.cpu_per_replica is not None and obs.cpu_per_replica > p.resources.cpu * (1.0 + margin),
    )
    return (rate, p99, cpu)


def _contradiction(f: Figure) -> str:
    dev = f.deviation
    how = f"{dev:+.0%}" if dev is not None else "no measured figure"
    return (
        f"production contradicts the profile: {f.name} observed {f.observed:.3g}, measured {f.measured:.3g} ({how}); "
        "re-measure it on the pool's hardware"
    )


def live_plan(
    fleet: str | Path,
    deployments: str | Path,
    reader: PrometheusReader,
    *,
    since_s: float,
    margin: float = DEFAULT_MARGIN,
    time_limit_s: float = 10.0,
) -> Plan:
    """``honed plan --prometheus``: plan from the files and the profiles, refined by what production showed."""
    from honed.plan.planner import make_plan
    from honed.plan.spec import load_deployments, load_fleet

    if margin <= 0:
        raise InvalidArgument(f"--margin must be > 0, got {margin}")
    pools, wanted = load_fleet(fleet), load_deployments(deployments)
    seen = observe(reader, [d.name for d in wanted], since_s)
    declared = {d.name: d.peak_rps for d in wanted}
    sized = [replace(d, peak_rps=max(d.peak_rps, seen[d.name].peak_rps or 0.0)) for d in wanted]
    histories = {}
    for d in sized:
        if d.autoscaling.policy == "predictive":
            history = merged_history(d.autoscaling.history, seen[d.name].times, seen[d.name].rates)
            if history is not None:
                histories[d.name] = history
    plan = make_plan(pools, sized, time_limit_s=time_limit_s, load_history=histories)
    placements = []
    for p in plan.placements:
        obs = seen[p.deployment]
        figures = _figures(p, declared[p.deployment], obs, margin)
        used = len(obs.times) if p.deployment in histories else 0
        live = LiveFigures(
            reader.url, since_s, margin, figures, history_points=used, step_s=reader.step_s, cpu_metric=obs.cpu_metric
        )
        reasons = list(p.reasons)
        if figures[0].source == OBSERVED:
            reasons.append(
                f"sized for the observed peak of {figures[0].value:.3g} rps (declared {declared[p.deployment]:g})"
            )
        reasons.extend(_contradiction(f) for f in figures if f.contradicts)
        if not obs.rates and obs.p99_ms is None and obs.cpu_per_replica is None:
            reasons.append(
                f"Prometheus at {reader.url} holds no series of model {p.deployment!r} over the last {since_s:g} s "
                "(is it scraped, and served under the deployment's name?): every figure is from the files"
            )
        placements.append(replace(p, live=live, reasons=tuple(reasons)))
    return replace(plan, placements=tuple(placements))
