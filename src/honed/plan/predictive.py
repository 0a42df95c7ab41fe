"""Predictive autoscaling: forecast the load, provision ahead by the model-load time, within a cost cap.

The policy runs beside the reactive HPA, never instead of it: the forecast becomes a second (external)
metric of the same HPA, so the larger proposal wins and the HPA's stabilization and rate limits apply to
both. Hence a forecast can only raise the replica count: scale-in happens only when the reactive metric
asks for it (never on a forecast alone). The forecast looks ahead by the provisioning lead (measured
model-load time + pod start), so replicas are ready when the load arrives. :class:`ForecastFloor` sizes the
floor: the Holt-Winters peak bounded by what past seasons confirmed, plus a margin relative to the load.
Extra replicas beyond the reactive count are capped (:func:`capped_floor`: ``max_extra_fraction`` of it,
and ``max_extra_cost_per_hour``). An anomaly in load or latency (modified z-score > 3.5,
:mod:`honed.plan.anomaly`) freezes scale-in for ``freeze_s``.

:func:`floor_for_placement` is the same floor computed from a load history file's rows, for the forecast
server KEDA reads (:mod:`honed.deploy.forecast_server`); :func:`daily_schedule` turns a load history into a
day-ahead schedule of hourly replica floors shown in ``plan.json``.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import InvalidArgument
from honed.fields import Document
from honed.plan.anomaly import AnomalyDetector
from honed.plan.document import PlannedScaling, ScheduleWindow
from honed.plan.forecast import LoadForecaster, forecast_series
from honed.plan.hpa import TOLERANCE, Decision, HorizontalPodAutoscaler, PodMetric


def load_history(path: str | Path) -> tuple[list[float], list[float]]:
    """Read a CSV of ``time, requests_per_s`` (header optional). Time: seconds, or ISO 8601 (UTC)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"load trace not found: {p}")
    times: list[float] = []
    rates: list[float] = []
    with p.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise InvalidArgument(f"{p}:{lineno}: need two columns: time, requests per second")
            try:
                rate = float(row[1])
            except ValueError:
                if lineno == 1:
                    continue  # a header
                raise InvalidArgument(f"{p}:{lineno}: requests per second {row[1]!r} is not a number") from None
            t = _time(row[0].strip(), p, lineno)
            if not math.isfinite(rate) or rate < 0:
                raise InvalidArgument(f"{p}:{lineno}: requests per second must be >= 0, got {rate}")
            if times and t <= times[-1]:
                raise InvalidArgument(f"{p}:{lineno}: times must increase")
            times.append(t)
            rates.append(rate)
    if len(times) < 2:
        raise InvalidArgument(f"{p}: a trace needs at least two rows")
    return times, rates


def _time(text: str, p: Path, lineno: int) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{p}:{lineno}: time {text!r} is neither seconds nor ISO 8601") from None
    return dt.timestamp()


def resample(times: Sequence[float], rates: Sequence[float], step_s: float) -> tuple[float, np.ndarray]:
    """Bucket means every ``step_s`` seconds, starting at the first bucket boundary; (start, values)."""
    t = np.asarray(times, dtype=float)
    r = np.asarray(rates, dtype=float)
    start = math.floor(t[0] / step_s) * step_s
    idx = ((t - start) // step_s).astype(int)
    sums = np.bincount(idx, weights=r)
    counts = np.bincount(idx)
    values = np.divide(sums, counts, out=np.full(len(sums), np.nan), where=counts > 0)
    mask = np.isnan(values)
    if mask.any():
        values[mask] = np.interp(np.flatnonzero(mask), np.flatnonzero(~mask), values[~mask])
    return start, values


def replicas_for_rate(rate: float, capacity_rps: float, target_utilization: float) -> int:
    return max(1, math.ceil(rate / (capacity_rps * target_utilization) - 1e-9))


def daily_schedule(
    times: Sequence[float],
    rates: Sequence[float],
    *,
    capacity_rps: float,
    target_utilization: float,
    lead_s: float,
    min_replicas: int,
    max_replicas: int,
    season_s: float = 86400.0,
    bucket_s: float = 900.0,
) -> tuple[ScheduleWindow, ...]:
    """Hourly replica floors for the next season (UTC), each window starting ``lead_s`` early.

    Needs two full seasons of history for the seasonal model; ``start``/``end`` are ``HH:MM`` UTC.
    """
    start, values = resample(times, rates, bucket_s)
    season = round(season_s / bucket_s)
    if len(values) < 2 * season:
        raise InvalidArgument(
            f"the load history covers {len(values) * bucket_s / 3600:.1f} h; the seasonal forecast needs two "
            f"seasons ({2 * season_s / 3600:g} h)"
        )
    fc = forecast_series(values, season, season=season)
    first_ts = start + len(values) * bucket_s
    per_hour = round(3600 / bucket_s)
    lead_buckets = math.ceil(lead_s / bucket_s)
    out: list[ScheduleWindow] = []
    for h in range(24):
        # Forecast buckets covering UTC hour h (the history may start at any time of day).
        offset = int(((h * 3600 - first_ts) % 86400) // bucket_s)
        idx = [(offset + i) % len(fc) for i in range(per_hour + lead_buckets)]
        peak = float(fc[idx].max())
        replicas = min(max_replicas, max(min_replicas, replicas_for_rate(peak, capacity_rps, target_utilization)))
        begin = (h * 3600 - lead_s) % 86400
        out.append(
            ScheduleWindow(
                start=f"{int(begin // 3600):02d}:{int(begin % 3600 // 60):02d}",
                end=f"{(h + 1) % 24:02d}:00",
                replicas=replicas,
                forecast_rps=round(peak, 3),
            )
        )
    return tuple(out)


def forecast_margin(residuals: Sequence[float], z: float) -> float:
    """Upper prediction bound of the forecast error: median + ``z`` robust standard deviations, >= 0.

    The robust standard deviation is 1.4826 x the median absolute deviation (the normal-consistent MAD), so
    the few minutes of an unforeseen burst (which the reactive metric answers) do not widen the margin the
    way they would widen a plain standard deviation; a forecast that runs low shows as a positive median.
    """
    if not residuals:
        return 0.0
    res = np.asarray(residuals, dtype=float)
    med = float(np.median(res))
    mad = float(np.median(np.abs(res - med)))
    return max(0.0, med + z * 1.4826 * mad)


@dataclass(frozen=True)
class FloorEstimate:
    """What the forecast asks for over the next ``horizon_s``: ``replicas`` at the SLO-safe utilization."""

    replicas: int
    forecast_rps: float
    """The forecast peak over the horizon, bounded by what past seasons confirmed."""
    margin_rps: float
    """The prediction margin added to ``forecast_rps`` (robust upper bound of the relative forecast error)."""
    level_rps: float
    horizon_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "forecast_rps": round(self.forecast_rps, 3),
            "margin_rps": round(self.margin_rps, 3),
            "provisioned_rps": round(self.forecast_rps + self.margin_rps, 3),
            "level_rps": round(self.level_rps, 3),
            "horizon_s": round(self.horizon_s, 3),
        }


@dataclass
class ForecastFloor:
    """The forecast's replica floor: feed the observed load with :meth:`observe`, ask :meth:`estimate`.

    * The forecast is Holt-Winters (:class:`LoadForecaster`), bounded above by :meth:`LoadForecaster.seen_peak`
      once two seasons of history exist: a rise is provisioned ahead only if every past season showed it, so a
      one-off burst in the history is not replayed every day (the reactive metric answers bursts nobody saw).
    * The margin is the robust upper bound of the forecast's recent *relative* errors (observed / forecast - 1)
      times the forecast: load noise grows with the load, so a margin learnt at night is not carried into the
      afternoon peak (nor the peak's into the night).
    * ``replicas`` provisions forecast + margin at ``utilization`` (the SLO-safe per-replica utilization).
    """

    capacity_rps: float
    utilization: float
    forecaster: LoadForecaster = field(default_factory=LoadForecaster)
    margin_z: float = 3.0
    margin_window: int = 240
    min_residuals: int = 8
    _residuals: deque[float] = field(default_factory=deque)

    def forecast(self, now: float, horizon_s: float) -> float | None:
        peak = self.forecaster.peak(now, horizon_s)
        if peak is None:
            return None
        seen = self.forecaster.seen_peak(now, horizon_s)
        return peak if seen is None else min(peak, seen)

    def observe(self, now: float, load_rps: float) -> None:
        self.forecaster.observe(now, load_rps)
        level = self.forecast(now, 0.0)
        if level is not None and level > 0:
            self._residuals.append(load_rps / level - 1.0)
            while len(self._residuals) > self.margin_window:
                self._residuals.popleft()

    def estimate(self, now: float, horizon_s: float) -> FloorEstimate | None:
        """The floor for [now, now + horizon_s]; None before the forecaster has enough history."""
        peak = self.forecast(now, horizon_s)
        level = self.forecast(now, 0.0)
        if peak is None or level is None:
            return None
        margin = (
            peak * forecast_margin(self._residuals, self.margin_z)
            if len(self._residuals) >= self.min_residuals
            else 0.0
        )
        replicas = replicas_for_rate(peak + margin, self.capacity_rps, self.utilization)
        return FloorEstimate(replicas, peak, margin, level, horizon_s)


def capped_floor(
    wanted: int,
    base: int,
    *,
    max_extra_fraction: float,
    max_extra_cost_per_hour: float | None,
    replica_cost_per_hour: float,
) -> int:
    """The forecast's replica count with the extra above ``base`` (the reactive count) capped by the cost cap."""
    if wanted <= base:
        return wanted
    extra_cap = math.floor(base * max_extra_fraction)
    if max_extra_cost_per_hour is not None and replica_cost_per_hour > 0:
        extra_cap = min(extra_cap, math.floor(max_extra_cost_per_hour / replica_cost_per_hour))
    return min(wanted, base + extra_cap)


@dataclass(frozen=True)
class PlacementFloor:
    """The forecast floor of one placement right after its load history ends (the forecast server's answer)."""

    history_end: float
    observed_rps: float
    reactive_replicas: int
    """What the last observed load needs at the planned utilization, within min/max replicas."""
    provisioning_lead_s: float
    replicas: int
    """What the predictive metric proposes (KEDA reads this field)."""
    forecast: FloorEstimate | None
    reason: str | None = None
    """Why there is no forecast, when there is none."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "history_end": self.history_end,
            "observed_rps": round(self.observed_rps, 3),
            "reactive_replicas": self.reactive_replicas,
            "provisioning_lead_s": round(self.provisioning_lead_s, 3),
            "replicas": self.replicas,
            "forecast": None if self.forecast is None else self.forecast.to_dict(),
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def floor_for_placement(
    autoscaling: PlannedScaling,
    times: Sequence[float],
    rates: Sequence[float],
    *,
    sync_s: float = 15.0,
    margin_z: float = 3.0,
) -> PlacementFloor:
    """The forecast floor right after a load history ends, for one placement's planned scaling.

    Replays the history through the same :class:`ForecastFloor` the predictive policy runs (so the margin is
    learnt from the forecast's errors on the history), then forecasts the next provisioning lead + one
    reconcile. ``replicas`` is what the predictive metric proposes: at least ``min_replicas``, at most
    ``max_replicas``, the extra above the count the current load needs capped like the policy caps it.
    """
    if len(times) != len(rates) or len(times) < 2:
        raise InvalidArgument("a load history needs at least two (time, requests/s) rows")
    a = autoscaling
    capacity, target = a.capacity_per_replica_rps, a.target_utilization
    lo, hi = a.min_replicas, a.max_replicas
    floor = ForecastFloor(
        capacity,
        target * (1 + TOLERANCE),
        LoadForecaster(season_s=a.season_s, bucket_s=min(300.0, a.season_s / 48)),
        margin_z=margin_z,
    )
    for t, r in zip(times, rates, strict=True):
        floor.observe(float(t), float(r))
    now, load = float(times[-1]), float(rates[-1])
    estimate = floor.estimate(now, a.provisioning_lead_s + sync_s)
    reactive = replicas_for_rate(load, capacity, target)
    replicas, reason = lo, None
    if estimate is None:
        # Too little history to forecast: propose the minimum, so the reactive metric alone decides.
        reason = "not enough history to forecast yet"
    else:
        wanted = capped_floor(
            estimate.replicas,
            reactive,
            max_extra_fraction=a.max_extra_fraction,
            max_extra_cost_per_hour=a.max_extra_cost_per_hour,
            replica_cost_per_hour=a.replica_cost_per_hour,
        )
        replicas = min(hi, max(lo, wanted))
    return PlacementFloor(
        history_end=now,
        observed_rps=load,
        reactive_replicas=min(hi, max(lo, reactive)),
        provisioning_lead_s=a.provisioning_lead_s,
        replicas=replicas,
        forecast=estimate,
        reason=reason,
    )


@dataclass(frozen=True)
class AnomalyEvent(Document):
    """An anomaly that froze scale-in: when, in which series, the value and its modified z-score."""

    t: float
    series: str
    value: float
    modified_z: float


@dataclass
class PredictiveAutoscaler:
    """Forecast floor + reactive HPA + anomaly freeze; :meth:`step` is one reconcile under a simulated clock."""

    hpa: HorizontalPodAutoscaler
    capacity_rps: float
    lead_s: float
    replica_cost_per_hour: float
    max_extra_fraction: float = 1.0
    max_extra_cost_per_hour: float | None = None
    sync_s: float = 15.0
    freeze_s: float = 600.0
    forecaster: LoadForecaster = field(default_factory=LoadForecaster)
    load_anomaly: AnomalyDetector = field(default_factory=AnomalyDetector)
    latency_anomaly: AnomalyDetector = field(default_factory=lambda: AnomalyDetector(mad_floor=0.05))
    frozen_until: float = -math.inf
    events: list[AnomalyEvent] = field(default_factory=list)
    margin_z: float = 3.0
    margin_window: int = 240
    _last_load: float | None = None
    _floor: ForecastFloor | None = None

    @property
    def floor(self) -> ForecastFloor:
        # The HPA holds utilization anywhere inside target x (1 +- tolerance); the floor provisions to the top
        # of that band (the planned SLO-safe utilization), not above what the HPA itself would keep.
        if self._floor is None or self._floor.forecaster is not self.forecaster:
            spec = self.hpa.spec
            self._floor = ForecastFloor(
                self.capacity_rps,
                spec.target_utilization * (1 + spec.tolerance),
                self.forecaster,
                margin_z=self.margin_z,
                margin_window=self.margin_window,
            )
        return self._floor

    def step(
        self, now: float, current: int, pods: Sequence[PodMetric], load_rps: float, p99_ms: float | None
    ) -> Decision:
        floor = self.floor
        floor.observe(now, load_rps)
        # Load is judged on its change per reconcile (a smooth daily ramp is normal, a jump or a drop is not);
        # latency on its level, upwards only (a p99 that suddenly gets worse).
        delta = None if self._last_load is None else load_rps - self._last_load
        self._last_load = load_rps
        for name, det, value, upward in (
            ("load change", self.load_anomaly, delta, False),
            ("p99 latency", self.latency_anomaly, p99_ms, True),
        ):
            if value is None or not math.isfinite(value):
                continue
            score, anomalous = det.observe(value)
            if anomalous and (score > 0 or not upward):
                if now >= self.frozen_until:
                    self.events.append(AnomalyEvent(float(now), name, float(round(value, 3)), float(round(score, 2))))
                self.frozen_until = now + self.freeze_s
        target = self.hpa.spec.target_utilization
        reactive_now = replicas_for_rate(load_rps, self.capacity_rps, target)
        external: float | None = None
        estimate = floor.estimate(now, self.lead_s + self.sync_s)
        if estimate is not None:
            external = float(
                capped_floor(
                    estimate.replicas,
                    max(current, reactive_now),
                    max_extra_fraction=self.max_extra_fraction,
                    max_extra_cost_per_hour=self.max_extra_cost_per_hour,
                    replica_cost_per_hour=self.replica_cost_per_hour,
                )
            )
        return self.hpa.step(now, current, pods, external=external, allow_scale_in=now >= self.frozen_until)
