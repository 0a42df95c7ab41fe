"""Load forecasting with Holt-Winters exponential smoothing (statsmodels), seasonal when history allows.

The series is bucketed (default 5-minute means). With two full seasons of buckets the model is additive
Holt-Winters with a damped additive trend and an additive season; with less, Holt's damped trend alone;
with fewer than ``min_points`` buckets, the last value. Smoothing parameters are optimized once per season
and reused in between (a refit with fixed parameters is a fast filter), so a forecaster can be refit every
few minutes of simulated time. :meth:`LoadForecaster.seen_peak` is the history's own bound on a window: the
lowest, over the last seasons, of the highest load each showed there (what recurred, not what happened once).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from honed.errors import InvalidArgument


def seasonal_periods(n: int, season: int | None) -> int | None:
    """``season`` when ``n`` buckets are enough for a seasonal fit, else None (Holt's trend alone).

    Two full seasons, and never fewer than the heuristic initialization needs (10 + 2 x (season // 2) buckets,
    which is more than two seasons for a season shorter than 9 buckets).
    """
    if not season or n < max(2 * season, 10 + 2 * (season // 2)):
        return None
    return season


def _fit_forecast(
    series: np.ndarray, season: int | None, params: dict[str, float] | None, steps: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit (optimized when ``params`` is None) and forecast ``steps`` ahead; returns (forecast >= 0, params)."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    model = ExponentialSmoothing(
        series,
        trend="add",
        damped_trend=True,
        seasonal="add" if season else None,
        seasonal_periods=season,
        # With a season, "estimated" would optimize every seasonal start value (hundreds of parameters, slow);
        # the heuristic start (two full seasons, which a seasonal fit requires here anyway) leaves four.
        initialization_method="heuristic" if season else "estimated",
    )
    with warnings.catch_warnings():
        # Optimizer chatter (convergence, bounds) is not actionable for a user; the fit is still used.
        warnings.simplefilter("ignore")
        result = model.fit(optimized=True) if params is None else model.fit(optimized=False, **params)
        forecast = np.maximum(np.asarray(result.forecast(steps), dtype=float), 0.0)
    return forecast, (_params(result) if params is None else params)


def _params(result: Any) -> dict[str, float]:
    p = result.params
    out = {"smoothing_level": float(p["smoothing_level"]), "damping_trend": float(p["damping_trend"])}
    if p.get("smoothing_trend") is not None and not math.isnan(p["smoothing_trend"]):
        out["smoothing_trend"] = float(p["smoothing_trend"])
    if p.get("smoothing_seasonal") is not None and not math.isnan(p["smoothing_seasonal"]):
        out["smoothing_seasonal"] = float(p["smoothing_seasonal"])
    return out


def forecast_series(
    values: Sequence[float] | np.ndarray, steps: int, *, season: int | None = None, min_points: int = 12
) -> np.ndarray:
    """Forecast ``steps`` buckets ahead of ``values`` (seasonal when ``season`` and two seasons are given)."""
    y = np.asarray(values, dtype=float)
    if steps < 1:
        raise InvalidArgument("forecast steps must be >= 1")
    if len(y) < min_points:
        return np.full(steps, y[-1] if len(y) else 0.0)
    return _fit_forecast(y, seasonal_periods(len(y), season), None, steps)[0]


@dataclass
class LoadForecaster:
    """Online forecaster: :meth:`observe` rates as they come, :meth:`peak` the highest forecast ahead."""

    bucket_s: float = 300.0
    season_s: float = 86400.0
    refit_s: float = 900.0
    min_points: int = 12
    buckets: list[float] = field(default_factory=list)
    _sum: float = 0.0
    _n: int = 0
    _bucket_start: float | None = None
    _params: dict[str, float] | None = None
    _params_seasonal: bool = False
    _params_at: float = -math.inf
    _fitted_at: float = -math.inf
    _forecast: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _forecast_start: float = 0.0

    @property
    def season(self) -> int:
        return max(2, round(self.season_s / self.bucket_s))

    def observe(self, now: float, rate: float) -> None:
        if self._bucket_start is None:
            self._bucket_start = now
        while now >= self._bucket_start + self.bucket_s:
            if self._n:
                self.buckets.append(self._sum / self._n)
            self._sum, self._n = 0.0, 0
            self._bucket_start += self.bucket_s
        self._sum += rate
        self._n += 1

    def peak(self, now: float, horizon_s: float) -> float | None:
        """Highest forecast rate over [now, now + horizon_s]; None before there is enough history."""
        if len(self.buckets) < self.min_points or self._bucket_start is None:
            return None
        if now - self._fitted_at >= self.refit_s or not len(self._forecast):
            self._refit(now)
        start = self._forecast_start
        first = max(0, math.floor((now - start) / self.bucket_s))
        last = max(first, math.ceil((now + horizon_s - start) / self.bucket_s))
        if last >= len(self._forecast):
            self._refit(now)
            start = self._forecast_start
            first = max(0, math.floor((now - start) / self.bucket_s))
            last = max(first, math.ceil((now + horizon_s - start) / self.bucket_s))
        window = self._forecast[first : last + 1]
        return float(window.max()) if len(window) else None

    def seen_peak(self, now: float, horizon_s: float, seasons: int = 2) -> float | None:
        """The load the history has confirmed for [now, now + horizon_s]: the lowest, over each of the last
        ``seasons`` seasons, of the highest observed bucket in that same window one (two, ...) season(s) ago.

        A rise that came back every season (a daily peak, a scheduled job) shows in all of them; a one-off burst
        only in one, so this bound is low there. None until ``seasons`` full seasons of buckets exist.
        """
        if self._bucket_start is None or len(self.buckets) < seasons * self.season:
            return None
        current = len(self.buckets)  # the index the bucket in progress will have
        first = current + max(0, math.floor((now - self._bucket_start) / self.bucket_s))
        last = max(first, current + math.ceil((now + horizon_s - self._bucket_start) / self.bucket_s))
        peaks = []
        for k in range(1, seasons + 1):
            lo, hi = first - k * self.season, min(last - k * self.season, len(self.buckets) - 1)
            if lo < 0 or hi < lo:
                return None
            peaks.append(max(self.buckets[lo : hi + 1]))
        return min(peaks)

    def _refit(self, now: float) -> None:
        y = np.asarray(self.buckets, dtype=float)
        seasonal = seasonal_periods(len(y), self.season)
        horizon = math.ceil((self.refit_s * 2 + 3600.0) / self.bucket_s) + 2
        stale = now - self._params_at >= self.season_s or (seasonal is not None) != self._params_seasonal
        if self._params is None or stale:
            self._forecast, self._params = _fit_forecast(y, seasonal, None, horizon)
            self._params_at, self._params_seasonal = now, seasonal is not None
        else:
            self._forecast, _ = _fit_forecast(y, seasonal, self._params, horizon)
        self._forecast_start = self._bucket_start or 0.0  # the first forecast bucket is the one in progress
        self._fitted_at = now
