"""Per-identity token buckets, on an injected clock: burst, refill, Retry-After, per-model patterns, reconfiguring."""

from __future__ import annotations

import pytest

from honed.errors import InvalidArgument, Overloaded
from honed.serve.limits import Rate, RateLimited, RateLimiter, RateLimits
from tests.serve.test_batching import FakeClock


def _limits(doc: object) -> RateLimits:
    return RateLimits.from_dict(doc)


def test_a_bucket_takes_a_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    refused: list[tuple[str, str]] = []
    limiter = RateLimiter(
        _limits({"default": {"rps": 2, "burst": 3}}), clock=clock, on_limited=lambda p, m: refused.append((p, m))
    )
    for _ in range(3):
        limiter.admit("app")
    with pytest.raises(RateLimited) as over:
        limiter.admit("app")
    assert isinstance(over.value, Overloaded)  # 429 / RESOURCE_EXHAUSTED through the dataplane's error table
    assert over.value.retry_after_s == pytest.approx(0.5)  # one request at 2 rps
    assert refused == [("app", "")]
    limiter.admit("other")  # another principal has a bucket of its own
    clock.now += 0.25
    with pytest.raises(RateLimited) as still:
        limiter.admit("app")
    assert still.value.retry_after_s == pytest.approx(0.25)
    clock.now += 0.25
    limiter.admit("app")
    clock.now += 3600  # a long pause refills up to the burst, not beyond
    for _ in range(3):
        limiter.admit("app")
    with pytest.raises(RateLimited):
        limiter.admit("app")


def test_without_a_limit_a_principal_is_not_limited() -> None:
    limiter = RateLimiter(_limits({"principals": {"batch": {"rps": 1}}}), clock=FakeClock())
    for _ in range(1000):
        limiter.admit("free")
    limiter.admit("batch")  # burst defaults to max(1, rps)
    with pytest.raises(RateLimited):
        limiter.admit("batch")


def test_a_model_pattern_has_one_bucket_and_a_refusal_takes_nothing() -> None:
    clock = FakeClock()
    doc = {"principals": {"app": {"rps": 1, "burst": 3, "models": {"fraud-*": {"rps": 1, "burst": 1}}}}}
    limiter = RateLimiter(_limits(doc), clock=clock)
    limiter.admit("app", "fraud-a")
    with pytest.raises(RateLimited) as over:
        limiter.admit("app", "fraud-b")  # every model the pattern matches shares its bucket
    assert over.value.model == "fraud-*" and over.value.principal == "app"
    limiter.admit("app", "credit")  # the refusal above took nothing from the principal's own bucket
    limiter.admit("app")
    with pytest.raises(RateLimited) as own:
        limiter.admit("app", "credit")
    assert own.value.model == ""


def test_reconfiguring_keeps_levels_caps_them_and_drops_removed_limits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(_limits({"default": {"rps": 1, "burst": 5}}), clock=clock)
    for _ in range(5):
        limiter.admit("app")
    limiter.configure(_limits({"default": {"rps": 1, "burst": 10}}))
    with pytest.raises(RateLimited):
        limiter.admit("app")  # a reload does not refill the bucket
    limiter.configure(RateLimits())
    for _ in range(100):
        limiter.admit("app")  # no limit any more
    limiter.configure(_limits({"default": {"rps": 1, "burst": 2}}))
    limiter.admit("app")
    limiter.admit("app")
    with pytest.raises(RateLimited):
        limiter.admit("app")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"default": {"rps": 0}}, "rps must be > 0"),
        ({"default": {"rps": 1, "burst": 0.5}}, "burst must be >= 1"),
        ({"default": {"rps": "fast"}}, "must be a number"),
        ({"default": {"burst": 3}}, "a limit is a mapping"),
        ({"defaults": {"rps": 1}}, "'limits' is a mapping"),
        ({"principals": {"app": {"rps": 1, "per": "s"}}}, "limits.principals.app"),
        ({"principals": {"app": {"models": {"m": {"rps": -1}}}}}, "limits.principals.app.models.m"),
        ({"principals": ["app"]}, "maps principal names"),
    ],
)
def test_bad_limits_are_refused_with_where_and_why(doc: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        RateLimits.from_dict(doc)


def test_limits_round_trip_through_their_dict_form() -> None:
    doc = {"default": {"rps": 5.0, "burst": 10.0}, "principals": {"a": {"models": {"m*": {"rps": 1.0, "burst": 1.0}}}}}
    limits = RateLimits.from_dict(doc)
    assert limits.to_dict() == doc
    assert RateLimits.from_dict(limits.to_dict()) == limits
    assert limits.rate("a") == Rate(5.0, 10.0)
