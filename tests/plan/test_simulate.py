from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from honed.errors import InvalidArgument
from honed.plan import traces
from honed.plan.document import OperatingPoint
from honed.plan.simulate import SimConfig, simulate

POINT = OperatingPoint(batch=1, threads=1, instances=1, p99_ms=5.0, mean_ms=4.0, throughput=100.0)


def config(**kw: object) -> SimConfig:
    base = dict(
        deployment="m",
        point=POINT,
        slo_p99_ms=50.0,
        lead_s=60.0,
        min_replicas=1,
        max_replicas=20,
        target_utilization=0.6,
        replica_cost_per_hour=0.5,
    )
    base.update(kw)
    return SimConfig(**base)  # type: ignore[arg-type]


def test_generators_are_seeded_and_shaped() -> None:
    a = traces.generate("diurnal-burst", days=1, base=100, peak=1000, seed=3)
    b = traces.generate("diurnal-burst", days=1, base=100, peak=1000, seed=3)
    assert np.array_equal(a.rates, b.rates) and len(a.times) == 1440
    assert not np.array_equal(a.rates, traces.generate("diurnal-burst", days=1, base=100, peak=1000, seed=4).rates)
    d = traces.generate("diurnal", days=1, base=100, peak=1000, seed=0, noise=0.0)
    assert d.rates[4 * 60] == pytest.approx(100) and d.rates[16 * 60] == pytest.approx(1000)
    ramp = traces.generate("ramp", days=1, base=0, peak=10, noise=0.0)
    assert ramp.rates[0] == 0 and ramp.rates[-1] == pytest.approx(10)
    with pytest.raises(InvalidArgument, match="unknown trace"):
        traces.generate("sawtooth")


def test_csv_round_trip_and_bad_csv(tmp_path: Path) -> None:
    t = traces.generate("spike", days=1, seed=1)
    path = traces.write_csv(t, tmp_path / "t.csv")
    back = traces.resolve(str(path))
    assert np.allclose(back.rates, t.rates, atol=1e-3)
    (tmp_path / "bad.csv").write_text("time,rps\n0,1\n60,-5\n")
    with pytest.raises(InvalidArgument, match=">= 0"):
        traces.resolve(str(tmp_path / "bad.csv"))


def test_static_peak_capacity_meets_the_slo() -> None:
    tr = traces.generate("diurnal", days=1, base=100, peak=1000, seed=0, noise=0.0)
    # 50 replicas x 100/s at a 1000/s peak: 20% busy, p99 = 5 + 1000 * ln(0.2 / 0.01) / 80 = 42 ms <= 50
    r = simulate(config(max_replicas=50), tr, "static")
    assert r.summary.slo_violation_minutes == 0
    assert r.summary.replica_hours == pytest.approx(50 * 24)


def test_hpa_follows_load_and_lags_a_step() -> None:
    tr = traces.Trace("step", np.arange(0, 7200, 60.0), np.where(np.arange(120) < 60, 100.0, 600.0))
    # A 20% target keeps p99 under the 50 ms SLO in this queueing model (as the planner would have chosen).
    r = simulate(config(target_utilization=0.2, max_replicas=60), tr, "hpa")
    before = r.replicas[r.times < 3540]  # the trace ramps from minute 59 to 60
    after = r.replicas[r.times > 3600 + 600]
    assert before.max() <= 6 and after.min() >= 28
    # the step overloads the replicas until new ones have loaded: some violation, then none
    assert 0 < r.summary.slo_violation_minutes <= 5
    assert (r.p99[r.times > 3600 + 600] <= 50).all()


def test_predictive_provisions_ahead_of_a_recurring_peak() -> None:
    # A 2-hour season: 100/s with a 15-minute burst to 800/s at minute 60; three seasons, the last one counted.
    minutes = np.arange(6 * 60)
    rates = np.where((minutes % 120 >= 60) & (minutes % 120 < 75), 800.0, 100.0)
    tr = traces.Trace("recurring", minutes * 60.0, rates)
    cfg = config(lead_s=180.0, season_s=7200.0)
    hpa = simulate(cfg, tr, "hpa", warmup_s=4 * 3600)
    pred = simulate(cfg, tr, "predictive", warmup_s=4 * 3600)
    assert hpa.summary.slo_violation_minutes >= 3
    assert pred.summary.slo_violation_minutes < hpa.summary.slo_violation_minutes
    assert pred.summary.minutes == hpa.summary.minutes == 120
    assert pred.summary.anomalies is not None and hpa.summary.anomalies is None


def test_unknown_policy() -> None:
    with pytest.raises(InvalidArgument, match="unknown policy"):
        simulate(config(), traces.generate("ramp", days=0.1), "magic")


def test_hpa_baseline_of_a_predictive_plan_uses_the_kubernetes_default_window() -> None:
    cfg = config(scale_down_window_s=60.0, hpa_scale_down_window_s=300.0)
    assert cfg.hpa_spec("hpa").scale_down.stabilization_window_s == 300.0
    assert cfg.hpa_spec("predictive").scale_down.stabilization_window_s == 60.0
