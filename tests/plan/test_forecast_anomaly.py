from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from honed.plan.anomaly import AnomalyDetector, modified_z
from honed.plan.forecast import LoadForecaster, forecast_series, seasonal_periods
from honed.plan.hpa import HorizontalPodAutoscaler, HPASpec, PodMetric
from honed.plan.predictive import (
    ForecastFloor,
    PredictiveAutoscaler,
    capped_floor,
    daily_schedule,
    forecast_margin,
)


def seasonal(n: int, period: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 60 * np.sin(2 * math.pi * t / period) + rng.normal(0, 3, n)


def test_holt_winters_forecasts_a_seeded_season() -> None:
    period = 24
    y = seasonal(4 * period + period, period)
    history, future = y[: 4 * period], y[4 * period :]
    fc = forecast_series(history, period, season=period)
    mape = float(np.mean(np.abs(fc - future) / future))
    naive = float(np.mean(np.abs(history[-1] - future) / future))
    assert mape < 0.06
    assert mape < naive / 3


def test_short_history_falls_back_and_never_goes_negative() -> None:
    assert list(forecast_series([5.0, 6.0], 3)) == [6.0, 6.0, 6.0]
    falling = np.linspace(100, 1, 40)
    assert (forecast_series(falling, 50) >= 0).all()


def test_a_short_season_forecasts_without_a_seasonal_fit_until_the_history_allows_one() -> None:
    # A 4-bucket season: two seasons (8 buckets) are not yet enough for the heuristic seasonal start (14).
    assert seasonal_periods(12, 4) is None and seasonal_periods(14, 4) == 4
    assert seasonal_periods(48, 24) == 24 and seasonal_periods(47, 24) is None and seasonal_periods(100, None) is None
    twelve = [50.0, 150.0, 50.0, 50.0] * 3
    assert len(forecast_series(twelve, 4, season=4)) == 4


def test_online_forecaster_sees_the_coming_peak() -> None:
    f = LoadForecaster(bucket_s=60, season_s=24 * 60, refit_s=600)
    y = seasonal(3 * 24, 24, seed=1)  # per-minute buckets, a 24-minute season
    for i, v in enumerate(np.repeat(y, 4)):
        f.observe(i * 15.0, float(v))
    now = 3 * 24 * 60.0
    # The season repeats: the next 6 minutes' peak is close to the same window one season ago.
    expected = float(y[2 * 24 : 2 * 24 + 7].max())
    peak = f.peak(now, 6 * 60)
    assert peak is not None and abs(peak - expected) / expected < 0.15


def test_modified_z_and_threshold() -> None:
    history = [10, 11, 9, 10, 12, 10, 9, 11, 10, 10]
    # median 10, MAD 0.5 -> M = 0.6745 * (30 - 10) / 0.5 = 26.98
    assert modified_z(history, 30) == pytest.approx(26.98)
    assert abs(modified_z(history, 11)) < 3.5
    assert modified_z([5, 5, 5], 5) == 0.0 and modified_z([5, 5, 5], 6) == math.inf
    det = AnomalyDetector(window=20, min_history=5)
    flags = [det.observe(v)[1] for v in [*history, 30]]
    assert flags[-1] and not any(flags[:-1])


def pods(n: int, util: float) -> list[PodMetric]:
    return [PodMetric(True, util)] * n


def test_predictive_never_scales_in_on_forecast_alone_and_caps_extra_cost() -> None:
    spec = HPASpec(1, 50, 0.5)
    policy = PredictiveAutoscaler(
        HorizontalPodAutoscaler(spec),
        capacity_rps=100,
        lead_s=60,
        replica_cost_per_hour=1.0,
        max_extra_cost_per_hour=2.0,
    )
    policy.forecaster = LoadForecaster(bucket_s=60, min_points=3)
    # A history of low load: the forecast says ~1 replica, but the pods sit at the target, so no scale-in.
    for i in range(20):
        policy.forecaster.observe(i * 15.0, 10.0)
    d = policy.step(300, 8, pods(8, 0.5), load_rps=400, p99_ms=None)
    assert d.desired == 8
    # A history of high load: the forecast wants 20 replicas (1000 rps at 50%), capped at 2 extra by cost.
    policy = PredictiveAutoscaler(
        HorizontalPodAutoscaler(spec),
        capacity_rps=100,
        lead_s=60,
        replica_cost_per_hour=1.0,
        max_extra_cost_per_hour=2.0,
    )
    policy.forecaster = LoadForecaster(bucket_s=60, min_points=3)
    for i in range(20):
        policy.forecaster.observe(i * 15.0, 1000.0)
    d = policy.step(300, 8, pods(8, 0.5), load_rps=400, p99_ms=None)
    assert d.desired == 10


def test_anomaly_freezes_scale_in_and_is_reported() -> None:
    policy = PredictiveAutoscaler(
        HorizontalPodAutoscaler(HPASpec(1, 50, 0.5)), capacity_rps=100, lead_s=60, replica_cost_per_hour=1.0
    )
    policy.hpa.spec = HPASpec(
        1, 50, 0.5, scale_down=policy.hpa.spec.scale_down.__class__(0.0, policy.hpa.spec.scale_down.policies)
    )
    rng = np.random.default_rng(0)
    t = 0.0
    for _ in range(30):
        policy.step(t, 8, pods(8, 0.5), load_rps=400 + float(rng.normal(0, 5)), p99_ms=10.0)
        t += 15
    # The load falls off a cliff: the HPA would scale in, the anomaly freezes it.
    d = policy.step(t, 8, pods(8, 0.05), load_rps=40, p99_ms=10.0)
    assert d.desired == 8
    assert policy.events and policy.events[-1].series == "load change"
    # After the freeze runs out (no further anomalies: steady low load), scale-in proceeds.
    for _ in range(50):
        t += 15
        d = policy.step(t, 8, pods(8, 0.05), load_rps=40, p99_ms=10.0)
    assert d.desired < 8


def test_daily_schedule_leads_the_morning_ramp() -> None:
    times = np.arange(0, 3 * 86400, 300.0)
    hours = (times % 86400) / 3600
    rates = np.where((hours >= 9) & (hours < 17), 900.0, 100.0)
    sched = daily_schedule(
        list(times), list(rates), capacity_rps=100, target_utilization=0.5, lead_s=600, min_replicas=1, max_replicas=30
    )
    by_end = {w.end: w for w in sched}
    assert by_end["10:00"].start == "08:50" and by_end["10:00"].replicas >= 17
    assert by_end["04:00"].replicas <= 3


def test_forecast_margin_is_the_robust_upper_prediction_bound() -> None:
    # Residuals -2, -1, 0, 1, 2: median 0, MAD median(2, 1, 0, 1, 2) = 1 -> 0 + 3 x 1.4826 x 1.
    assert forecast_margin([-2.0, -1.0, 0.0, 1.0, 2.0], 3.0) == pytest.approx(4.4478)
    # A forecast that runs 10 rps low: the median carries the bias.
    assert forecast_margin([8.0, 9.0, 10.0, 11.0, 12.0], 3.0) == pytest.approx(14.4478)
    # A forecast that runs high needs no margin.
    assert forecast_margin([-12.0, -11.0, -10.0, -9.0, -8.0], 3.0) == 0.0
    assert forecast_margin([], 3.0) == 0.0


def test_forecast_margin_is_not_inflated_by_a_short_burst() -> None:
    calm = [-1.0, 1.0] * 20  # median 0, MAD 1
    # Plus a minute of an unforeseen burst: median 1; deviations 20 x 2, 20 x 0, 4 x 149 -> MAD 2.
    burst = calm + [150.0] * 4
    assert forecast_margin(calm, 3.0) == pytest.approx(4.4478)
    assert forecast_margin(burst, 3.0) == pytest.approx(1.0 + 3.0 * 1.4826 * 2.0)
    assert 3.0 * float(np.std(burst)) > 100  # what a plain standard deviation would have added


def _feed(f: LoadForecaster, days: int, burst_day: int | None, recurring: bool) -> None:
    """15-s samples up to 09:59 of day ``days``: flat 100 rps, a burst to 300 at 10:00 for 20 minutes."""
    for i in range(days * 1440 * 4 + 599 * 4):
        t = i * 15.0
        minute = (t % 86400) // 60
        in_burst = 600 <= minute < 620
        rate = 300.0 if in_burst and (recurring or t // 86400 == burst_day) else 100.0
        f.observe(t, rate)


def test_seen_peak_keeps_a_recurring_rise_and_drops_a_one_off_burst() -> None:
    recurring = LoadForecaster(bucket_s=300)
    _feed(recurring, 2, None, recurring=True)
    one_off = LoadForecaster(bucket_s=300)
    _feed(one_off, 2, burst_day=0, recurring=False)
    now = 2 * 86400 + 599 * 60 + 30.0  # 30 s before 10:00 on the third day
    assert recurring.seen_peak(now, 45.0) == pytest.approx(300.0)
    assert one_off.seen_peak(now, 45.0) == pytest.approx(100.0)
    assert LoadForecaster(bucket_s=300).seen_peak(now, 45.0) is None
    short = LoadForecaster(bucket_s=300)
    _feed(short, 1, None, recurring=True)
    assert short.seen_peak(86400 + 599 * 60 + 30.0, 45.0) is None  # one season: not confirmed twice


def test_forecast_floor_provisions_a_confirmed_rise_ahead_and_not_a_one_off() -> None:
    for recurring, expect_burst in ((True, True), (False, False)):
        f = LoadForecaster(bucket_s=300)
        _feed(f, 2, burst_day=0, recurring=recurring)
        floor = ForecastFloor(capacity_rps=10.0, utilization=0.5, forecaster=f)
        now = 2 * 86400 + 599 * 60 + 30.0
        for k in range(8):  # the last calm reconciles before 10:00, for the residuals
            floor.observe(now - (7 - k) * 15.0, 100.0)
        est = floor.estimate(now, 45.0)
        assert est is not None
        # 300 rps at 5 rps per replica is 60 replicas; 100 rps is 20.
        assert (est.replicas >= 60) == expect_burst
        assert est.replicas >= 20
        assert est.to_dict()["provisioned_rps"] == pytest.approx(est.forecast_rps + est.margin_rps, abs=1e-3)


@given(
    wanted=st.integers(1, 500),
    base=st.integers(1, 500),
    fraction=st.floats(0.0, 2.0),
    cost_cap=st.one_of(st.none(), st.floats(0.0, 100.0)),
    replica_cost=st.floats(0.01, 10.0),
)
def test_capped_floor_only_caps_the_extra_above_the_reactive_count(
    wanted: int, base: int, fraction: float, cost_cap: float | None, replica_cost: float
) -> None:
    got = capped_floor(
        wanted, base, max_extra_fraction=fraction, max_extra_cost_per_hour=cost_cap, replica_cost_per_hour=replica_cost
    )
    if wanted <= base:
        assert got == wanted  # at or below the reactive count: nothing to cap
    else:
        assert base <= got <= wanted
        assert got - base <= math.floor(base * fraction)
        if cost_cap is not None:
            assert (got - base) * replica_cost <= cost_cap + 1e-9


def test_margin_follows_the_load_level() -> None:
    """Relative errors: the same 5% noise gives a margin about 10x larger at 10x the load."""
    rng = np.random.default_rng(3)
    rel = 0.05 * rng.standard_normal(160)
    margins = []
    for level in (100.0, 1000.0):
        floor = ForecastFloor(capacity_rps=50.0, utilization=0.5, forecaster=LoadForecaster(bucket_s=60))
        for i, r in enumerate(rel):
            floor.observe(i * 15.0, level * (1 + r))
        est = floor.estimate(len(rel) * 15.0, 45.0)
        assert est is not None
        # About 3 robust standard deviations of 5% noise, as a fraction of the forecast.
        assert 0.08 < est.margin_rps / est.forecast_rps < 0.25
        margins.append(est.margin_rps)
    assert margins[1] / margins[0] == pytest.approx(10.0, rel=0.1)
