"""ServeMetrics: isolated registries, outcomes, histograms and the busy ratio over a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from honed.errors import DataError, DeadlineExceeded, HonedError, NotFound, Overloaded, Unavailable
from honed.serve.metrics import OUTCOMES, ServeMetrics, outcome_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "success"),
        (DataError("x"), "invalid"),
        (NotFound("x"), "not_found"),
        (Overloaded("x"), "overloaded"),
        (Unavailable("x"), "unavailable"),
        (DeadlineExceeded("x"), "timeout"),
        (asyncio.CancelledError(), "cancelled"),
        (HonedError("x"), "error"),
        (RuntimeError("x"), "error"),
    ],
)
def test_outcome_of(exc: BaseException | None, outcome: str) -> None:
    assert outcome_of(exc) == outcome
    assert outcome in OUTCOMES


def test_registries_are_isolated() -> None:
    a, b = ServeMetrics(), ServeMetrics()
    a.observe_request("m", "1", "success", 0.01)
    assert b"honed_requests_total" not in b.render()[0] or b'model="m"' not in b.render()[0]
    assert b'honed_requests_total{model="m",outcome="success",version="1"} 1.0' in a.render()[0]


def test_request_timer_uses_the_clock_and_records_errors() -> None:
    clock = FakeClock()
    metrics = ServeMetrics(clock=clock)
    bound = metrics.model("m", "2")
    with pytest.raises(Overloaded), bound.request():
        clock.now += 0.003
        raise Overloaded("full")
    text = metrics.render()[0].decode()
    assert 'honed_requests_total{model="m",outcome="overloaded",version="2"} 1.0' in text
    assert 'honed_request_duration_seconds_bucket{le="0.004",model="m",version="2"} 1.0' in text
    assert 'honed_request_duration_seconds_bucket{le="0.002",model="m",version="2"} 0.0' in text


def test_busy_ratio_since_last_scrape() -> None:
    clock = FakeClock()
    metrics = ServeMetrics(clock=clock)
    bound = metrics.model("m", "1")
    bound.set_instances(2)
    clock.now = 10.0
    bound.observe_batch(4, 5.0)  # 5 busy seconds over 10 s on 2 instances
    assert 'honed_instance_busy_ratio{model="m",version="1"} 0.25' in metrics.render()[0].decode()
    clock.now = 20.0  # idle since the last scrape
    assert 'honed_instance_busy_ratio{model="m",version="1"} 0.0' in metrics.render()[0].decode()


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        ServeMetrics().observe_request("m", "1", "weird", 0.1)
