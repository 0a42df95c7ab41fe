"""Predictive autoscaling: forecast the load, provision ahead by the model-load time, within a cost cap.

The policy runs beside the reactive HPA, never instead of it: the forecast becomes a second (external)
metric of the same HPA, so the larger proposal wins and the HPA's stabilization and rate limits apply to
both. Hence a forecast can only raise the replica count: scale-in happens only when the reactive metric
asks for it (never on a forecast alone). The forecast looks ahead by the provisioning lead (measured
model-load time + pod start), so replicas are ready when the load arrives. Extra replicas beyond the
reactive count are capped (``max_extra_fraction`` of it, and ``max_extra_cost_per_hour``). An anomaly in
load or latency (modified z-score > 3.5, :mod:`honed.plan.anomaly`) freezes scale-in for ``freeze_s``.

For manifests, :func:`daily_schedule` turns a load history into a day-ahead schedule of replica floors.
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
from honed.plan.anomaly import AnomalyDetector
from honed.plan.forecast import LoadForecaster, forecast_series
from honed.plan.hpa import Decision, HorizontalPodAutoscaler, PodMetric


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
) -> list[dict[str, Any]]:
    """Hourly replica floors for the next season (UTC), each window starting ``lead_s`` early.

    Needs two full seasons of history for the seasonal model; returns [{start, end, replicas, forecast_rps}]
    with ``start``/``end`` as ``HH:MM`` UTC.
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
    out = []
    for h in range(24):
        # Forecast buckets covering UTC hour h (the history may start at any time of day).
        offset = int(((h * 3600 - first_ts) % 86400) // bucket_s)
        idx = [(offset + i) % len(fc) for i in range(per_hour + lead_buckets)]
        peak = float(fc[idx].max())
        replicas = min(max_replicas, max(min_replicas, replicas_for_rate(peak, capacity_rps, target_utilization)))
        begin = (h * 3600 - lead_s) % 86400
        out.append(
            {
                "start": f"{int(begin // 3600):02d}:{int(begin % 3600 // 60):02d}",
                "end": f"{(h + 1) % 24:02d}:00",
                "replicas": replicas,
                "forecast_rps": round(peak, 3),
            }
        )
    return out


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


@dataclass
class PredictiveAutoscaler:
    """Forecast + reactive HPA + anomaly freeze; :meth:`step` is one reconcile under a simulated clock."""

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
    events: list[dict[str, Any]] = field(default_factory=list)
    margin_z: float = 3.0
    margin_window: int = 240
    _last_load: float | None = None
    _residuals: deque[float] = field(default_factory=deque)

    def step(
        self, now: float, current: int, pods: Sequence[PodMetric], load_rps: float, p99_ms: float | None
    ) -> Decision:
        self.forecaster.observe(now, load_rps)
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
                    self.events.append(
                        {"t": now, "series": name, "value": round(value, 3), "modified_z": round(score, 2)}
                    )
                self.frozen_until = now + self.freeze_s
        target = self.hpa.spec.target_utilization
        reactive_now = replicas_for_rate(load_rps, self.capacity_rps, target)
        external: float | None = None
        peak = self.forecaster.peak(now, self.lead_s + self.sync_s)
        level = self.forecaster.peak(now, 0.0)
        if level is not None:
            # The forecast's own residuals (observed load - forecast level), reconcile to reconcile: the floor
            # adds their robust upper prediction bound, so noise does not push the replicas past the SLO-safe
            # utilization, while a burst the forecast could not know does not inflate the margin for an hour.
            self._residuals.append(load_rps - level)
            while len(self._residuals) > self.margin_window:
                self._residuals.popleft()
        if peak is not None:
            if len(self._residuals) >= 8:
                peak += forecast_margin(self._residuals, self.margin_z)
            # The HPA holds utilization anywhere inside target x (1 +- tolerance); the forecast floor aims at the
            # top of that band (the planned SLO-safe utilization), not above what the HPA itself would keep.
            wanted = replicas_for_rate(peak, self.capacity_rps, target * (1 + self.hpa.spec.tolerance))
            extra_cap = math.floor(max(current, reactive_now) * self.max_extra_fraction)
            if self.max_extra_cost_per_hour is not None and self.replica_cost_per_hour > 0:
                extra_cap = min(extra_cap, math.floor(self.max_extra_cost_per_hour / self.replica_cost_per_hour))
            base = max(current, reactive_now)
            external = float(min(wanted, base + extra_cap)) if wanted > base else float(wanted)
        return self.hpa.step(now, current, pods, external=external, allow_scale_in=now >= self.frozen_until)
