"""The live anomaly rules and the live-figure documents on synthetic series (no server needed)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from honed.errors import InvalidArgument
from honed.plan.anomaly import deseasonalized
from honed.plan.document import DECLARED, MEASURED, OBSERVED, Figure, LiveFigures, Placement, Plan
from honed.plan.live_anomaly import RULES, detect
from honed.plan.planner import make_plan
from honed.plan.prometheus import (
    PrometheusReader,
    Series,
    complete_windows,
    error_rate_query,
    latency_quantile_query,
    parse_duration,
    parse_time,
    request_rate_query,
)
from honed.plan.spec import Deployment, Pool
from honed.serve.contract import REQUEST_DURATION, REQUESTS
from tests.plan.helpers import bench_doc, write_json

MINUTE = 60.0


def noisy(n: int, level: float, seed: int = 0, noise: float = 0.05) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + rng.uniform(-noise, noise)) for _ in range(n)]


def times(n: int, step: float = MINUTE) -> list[float]:
    return [i * step for i in range(n)]


def test_a_step_in_load_is_one_anomaly_starting_at_the_step() -> None:
    values = noisy(360, 10.0)
    stepped = [v * 3 if i >= 240 else v for i, v in enumerate(values)]
    assert detect(times(360), values, RULES["request_rate"]) == []
    (found,) = detect(times(360), stepped, RULES["request_rate"], model="m", version="2")
    assert (found.series, found.model, found.version, found.start) == ("request_rate", "m", "2", 240 * MINUTE)
    assert found.baseline == pytest.approx(10.0, rel=0.05) and found.change > 1.5 and found.modified_z > 3.5
    assert found.end >= found.start and found.points >= 1
    # A drop in load counts as well.
    (drop,) = detect(times(360), [v / 4 if i >= 240 else v for i, v in enumerate(values)], RULES["request_rate"])
    assert drop.start == 240 * MINUTE and drop.modified_z < -3.5


def test_latency_and_errors_only_alarm_upwards_and_past_their_floor() -> None:
    p99 = noisy(200, 8.0, seed=1)
    faster = [v / 2 if i >= 150 else v for i, v in enumerate(p99)]
    slower = [v * 2 if i >= 150 else v for i, v in enumerate(p99)]
    assert detect(times(200), faster, RULES["p99_ms"]) == []
    assert [a.start for a in detect(times(200), slower, RULES["p99_ms"])] == [150 * MINUTE]
    # One failed request in a thousand is below the error ratio's floor; a fifth failing is not.
    few = [0.0] * 150 + [0.001] + [0.0] * 49
    assert detect(times(200), few, RULES["error_ratio"]) == []
    (burst,) = detect(times(200), [0.0] * 150 + [0.2] * 5 + [0.0] * 45, RULES["error_ratio"])
    assert burst.start == 150 * MINUTE and burst.points == 5 and burst.to_dict()["change"] is None


def test_a_daily_pattern_is_not_an_anomaly_once_two_seasons_are_in_view() -> None:
    season = 288  # five-minute samples a day
    rng = random.Random(3)
    daily = [100 + 50 * math.sin(2 * math.pi * i / season) + rng.uniform(-3, 3) for i in range(3 * season)]
    t = times(len(daily), 300.0)
    assert detect(t, daily, RULES["request_rate"]) != []  # judged raw, the daily swing looks anomalous
    assert detect(t, daily, RULES["request_rate"], season_points=season) == []
    stepped = [v + 80 if i >= 700 else v for i, v in enumerate(daily)]
    (found,) = detect(t, stepped, RULES["request_rate"], season_points=season)
    assert found.start == 700 * 300.0
    # Too short for two seasons: the series comes back as it was.
    assert deseasonalized(daily[:300], season) == daily[:300]


def test_queries_name_the_contracts_series() -> None:
    assert REQUESTS.name in request_rate_query(60) and "sum by (model, version)" in request_rate_query(60)
    assert 'outcome!="success"' in error_rate_query(60, 'a"b')
    assert 'model="a\\"b"' in error_rate_query(60, 'a"b')
    q = latency_quantile_query(0.99, 240, "m")
    assert q.startswith("histogram_quantile(0.99,") and f"{REQUEST_DURATION.name}_bucket" in q and "[240s]" in q
    with pytest.raises(InvalidArgument):
        latency_quantile_query(1.5, 60)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("30m", 1800.0), ("24h", 86400.0), ("1.5d", 129600.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "soon", "-1h", "0s", "1y"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--since"):
        parse_duration(text)


def test_times_and_urls() -> None:
    assert parse_time("1700000000") == 1700000000.0
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    with pytest.raises(InvalidArgument, match="--until"):
        parse_time("yesterday")
    with pytest.raises(InvalidArgument, match="http"):
        PrometheusReader("127.0.0.1:9090")
    with pytest.raises(InvalidArgument, match="--step"):
        PrometheusReader("http://127.0.0.1:9090", step_s=0)
    reader = PrometheusReader("http://127.0.0.1:9090/", clock=lambda: 86400.0)
    assert reader.url == "http://127.0.0.1:9090"
    assert reader.window(3600) == (82800.0, 86400.0, 60.0)
    assert reader.window(7 * 86400, end=1000.0)[1:] == (1000.0, 404.0)


def test_rate_samples_whose_window_reaches_past_the_scrapes_are_dropped() -> None:
    # Steps every 60 s from 0 to 3600, rate() over 240 s. The counter was scraped from 610 s to 1810 s: rate() has
    # samples from 660 s to 2040 s, and those less than a window after its first scrape or after its last hold part
    # of it.
    seen = [t for t in times(61) if 660 <= t <= 2040]
    rates = Series({"model": "m", "version": "1"}, tuple(seen), tuple(1.0 for _ in seen))
    newest = [min(t - 50, 1810.0) for t in times(61) if 660 <= t <= 2100]
    scraped = Series({"model": "m"}, tuple(t for t in times(61) if 660 <= t <= 2100), tuple(newest))
    partial = complete_windows(rates, scraped, 0, 3600, 60, 240)
    assert partial.labels == rates.labels
    assert partial.times == tuple(t for t in seen if 610 + 240 <= t <= 1810)
    assert len(partial.values) == len(partial.times)
    # Scraped through the whole range: every sample stays; so do they without a scrape series.
    whole = Series({}, tuple(times(61)), tuple(1.0 for _ in range(61)))
    assert (
        complete_windows(whole, Series({}, whole.times, tuple(t - 10 for t in whole.times)), 0, 3600, 60, 240) == whole
    )
    assert complete_windows(rates, None, 0, 3600, 60, 240) == rates
    # Scraped for less than a window: nothing is left.
    short = Series({}, (1200.0, 1260.0), (1190.0, 1250.0))
    assert complete_windows(rates, short, 0, 3600, 60, 240).times == ()


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    bench = write_json(tmp_path_factory.mktemp("live-doc") / "bench.json", bench_doc())
    pools = [Pool("cpu", 2, 16.0, 64.0, 0.5)]
    return make_plan(pools, [Deployment("scorer", 20.0, 200.0, profile=str(bench), model_load_s=0.5)], time_limit_s=5)


def test_live_figures_round_trip_on_a_placement(planned: Plan) -> None:
    figures = (
        Figure("peak_rps", 40.0, OBSERVED, 20.0, 40.0),
        Figure("p99_ms", 12.0, OBSERVED, 6.0, 12.0, contradicts=True),
        Figure("cpu_per_replica", 2.0, DECLARED, 2.0, None),
    )
    live = LiveFigures("http://prom:9090", 86400.0, 0.5, figures, history_points=1440, step_s=60.0)
    placement = replace(planned.placements[0], live=live)
    data = placement.to_dict()
    assert data["live"]["figures"][1] == {
        "name": "p99_ms",
        "value": 12.0,
        "source": OBSERVED,
        "measured": 6.0,
        "observed": 12.0,
        "deviation": 1.0,
        "contradicts": True,
    }
    back = Placement.from_dict(data, "plan.json: placements[0]")
    assert back == placement and back.live is not None and back.live.contradicted == ("p99_ms",)
    assert "live" not in planned.placements[0].to_dict()
    data["live"]["figures"][0]["source"] = "guessed"
    with pytest.raises(InvalidArgument, match="source must be"):
        Placement.from_dict(data, "plan.json: placements[0]")
    assert MEASURED != OBSERVED
