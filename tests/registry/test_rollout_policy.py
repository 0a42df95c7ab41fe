"""The rollout decision rules over generated scenarios, on a fake clock: every interval is one call of
``decide`` with an observation drawn for that interval, exactly as the controller feeds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from honed.errors import InvalidArgument
from honed.registry import rollout_policy as rp

T0 = datetime(2026, 12, 1, tzinfo=UTC)
BASE = rp.RolloutSettings(
    steps=(5, 25, 50, 100),
    interval_s=60,
    mirror=0.1,
    max_error_rate=0.01,
    max_p99_ratio=1.2,
    min_agreement=0.99,
    min_requests=200,
    deadline_s=1800,
)


def stats(requests: int, errors: int = 0, latency_ms: float = 10.0) -> rp.VersionStats:
    counts = [0] * (len(rp.LATENCY_BUCKETS_MS) + 1)
    counts[rp.bucket_of(latency_ms)] = requests
    return rp.VersionStats(requests, errors, tuple(counts))


def obs(
    canary: int, *, production: int = 2000, errors: int = 0, pairs: int | None = None, agree: float = 1.0,
    canary_ms: float = 10.0, production_ms: float = 10.0,
) -> rp.Observation:  # fmt: skip
    n = canary if pairs is None else pairs
    return rp.Observation(stats(production, 0, production_ms), stats(canary, errors, canary_ms), n, agree * n)


def run(settings_: rp.RolloutSettings, observations: list[rp.Observation]) -> list[rp.Decision]:
    """Feed one observation per interval until the rollout concludes (or the observations run out)."""
    progress = rp.Progress(0, 0, T0)
    decisions: list[rp.Decision] = []
    for i, o in enumerate(observations, start=1):
        d = rp.decide(progress, o, settings_, T0 + timedelta(seconds=settings_.interval_s * i))
        decisions.append(d)
        if d.action in (rp.PROMOTE, rp.ROLLBACK, rp.AWAIT_APPROVAL):
            break
        progress = rp.Progress(d.step, d.failures, T0)
    return decisions


enough = st.integers(min_value=200, max_value=5000)


@settings(max_examples=60, deadline=None)
@given(canary=enough, agree=st.floats(min_value=0.0, max_value=0.985), faster=st.floats(0.1, 1.0))
def test_an_error_free_faster_canary_that_disagrees_rolls_back(canary: int, agree: float, faster: float) -> None:
    d = rp.decide(
        rp.Progress(0, 0, T0), obs(canary, agree=agree, canary_ms=10 * faster), BASE, T0 + timedelta(seconds=60)
    )
    assert (d.verdict, d.action) == (rp.FAIL, rp.ROLLBACK)
    assert any("agreement" in r for r in d.reasons) and d.figures["agreement"] == pytest.approx(agree)


def test_ninety_percent_agreement_rolls_back_at_any_step() -> None:
    good = [obs(400)] * 2
    decisions = run(BASE, [*good, obs(400, agree=0.9)])
    assert [d.action for d in decisions] == [rp.ADVANCE, rp.ADVANCE, rp.ROLLBACK]


@settings(max_examples=60, deadline=None)
@given(canary=enough, rate=st.floats(min_value=0.011, max_value=1.0), step=st.integers(0, 3))
def test_a_canary_with_errors_rolls_back(canary: int, rate: float, step: int) -> None:
    errors = max(1, min(canary, round(canary * rate)))
    if errors / canary <= BASE.max_error_rate:
        errors += 1
    d = rp.decide(rp.Progress(step, 0, T0), obs(canary, errors=errors), BASE, T0 + timedelta(seconds=60))
    assert d.action == rp.ROLLBACK and any("error rate" in r for r in d.reasons)


def test_a_slow_canary_rolls_back_on_its_p99_ratio() -> None:
    d = rp.decide(rp.Progress(1, 0, T0), obs(500, canary_ms=40, production_ms=10), BASE, T0 + timedelta(seconds=60))
    assert d.action == rp.ROLLBACK and d.figures["p99_ratio"] == pytest.approx(50 / 10)


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(enough, min_size=4, max_size=4), agree=st.floats(min_value=0.99, max_value=1.0))
def test_a_good_canary_promotes_through_every_step(counts: list[int], agree: float) -> None:
    decisions = run(BASE, [obs(n, agree=agree) for n in counts])
    assert [d.action for d in decisions] == [rp.ADVANCE, rp.ADVANCE, rp.ADVANCE, rp.PROMOTE]
    assert [d.figures["weight"] for d in decisions] == [5, 25, 50, 100]


def test_the_last_step_waits_for_approval_when_asked() -> None:
    wanting = rp.RolloutSettings(**{**BASE.__dict__, "require_approval": True})
    assert run(wanting, [obs(300)] * 4)[-1].action == rp.AWAIT_APPROVAL


@settings(max_examples=40, deadline=None)
@given(trickle=st.lists(st.integers(0, 199), min_size=40, max_size=40))
def test_no_traffic_holds_then_rolls_back_at_the_deadline_never_promotes(trickle: list[int]) -> None:
    decisions = run(BASE, [obs(n) for n in trickle])
    assert all(d.verdict == rp.INCONCLUSIVE for d in decisions)
    assert [d.action for d in decisions[:-1]] == [rp.HOLD] * (len(decisions) - 1)
    assert decisions[-1].action == rp.ROLLBACK and "deadline" in decisions[-1].reasons[-1]
    assert len(decisions) == BASE.deadline_s / BASE.interval_s


@settings(max_examples=100, deadline=None)
@given(
    canary=st.integers(0, 5000),
    production=st.integers(0, 5000),
    pairs=st.integers(0, 5000),
    errors=st.integers(0, 5000),
    agree=st.floats(0, 1),
    min_requests=st.integers(1, 1000),
    step=st.integers(0, 3),
)
def test_no_decision_on_fewer_than_min_requests(
    canary: int, production: int, pairs: int, errors: int, agree: float, min_requests: int, step: int
) -> None:
    s = rp.RolloutSettings(**{**BASE.__dict__, "min_requests": min_requests})
    o = obs(canary, production=production, pairs=pairs, errors=min(errors, canary), agree=agree)
    d = rp.decide(rp.Progress(step, 0, T0), o, s, T0 + timedelta(seconds=60))
    if min(canary, production, pairs) < min_requests:
        assert (d.verdict, d.action, d.step, d.failures) == (rp.INCONCLUSIVE, rp.HOLD, step, 0)
    else:
        assert d.verdict in (rp.PASS, rp.FAIL)


def test_threshold_counts_failed_intervals_before_rolling_back() -> None:
    patient = rp.RolloutSettings(**{**BASE.__dict__, "threshold": 2})
    decisions = run(patient, [obs(300, agree=0.5), obs(300), obs(300, agree=0.5)])
    assert [(d.action, d.failures) for d in decisions] == [(rp.HOLD, 1), (rp.ADVANCE, 1), (rp.ROLLBACK, 2)]


def test_due_after_one_interval() -> None:
    assert not rp.due(T0, BASE, T0 + timedelta(seconds=59.9))
    assert rp.due(T0, BASE, T0 + timedelta(seconds=60))


def test_p99_is_the_bucket_bound_of_the_99th_percentile() -> None:
    s = rp.VersionStats.of([1.5] * 99 + [300.0])
    assert s.p99_ms() == 2 and rp.VersionStats.of([1.5] * 98 + [300.0] * 2).p99_ms() == 500
    assert rp.VersionStats().p99_ms() is None and rp.VersionStats.of([1e9]).p99_ms() == float("inf")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": (5, 5, 100)}, "must increase"),
        ({"steps": (50, 25)}, "must increase"),
        ({"steps": (5, 150)}, "1 to 100"),
        ({"steps": ()}, "at least one"),
        ({"mirror": 1.5}, "--mirror"),
        ({"max_error_rate": -0.1}, "--max-error-rate"),
        ({"max_p99_ratio": 0.5}, "--max-p99-ratio"),
        ({"min_agreement": 1.2}, "--min-agreement"),
        ({"min_agreement": 0.9, "mirror": 0.0}, "--mirror above 0"),
        ({"min_requests": 0}, "--min-requests"),
        ({"threshold": 0}, "--threshold"),
        ({"deadline_s": 100}, "--deadline"),
        ({"interval_s": 0}, "--interval"),
        ({"agreement_metric": "l2"}, "unknown agreement metric"),
    ],
)
def test_bad_settings_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        rp.RolloutSettings(**{**BASE.__dict__, **change}).validate()  # type: ignore[arg-type]


def test_settings_round_trip() -> None:
    assert rp.RolloutSettings.from_dict(BASE.to_dict()) == BASE
