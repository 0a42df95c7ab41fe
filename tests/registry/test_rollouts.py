"""Rollouts in the registry database (SQLite, and PostgreSQL when HONED_TEST_POSTGRES_URL is set): state that
survives reopening, one active rollout per model, each transition audited, promotion moving the alias in the
verdict's transaction, and one controller per interval through the lease. The clock is a fake one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Table, create_engine, func, select

from honed.errors import AlreadyExists, InvalidArgument, NotFound, ResidencyViolation
from honed.registry import Registry, open_registry, schema
from honed.registry import rollout_policy as rp
from honed.registry.audit_key import create_key
from honed.registry.rollouts import ABORTED, AWAITING_APPROVAL, PAUSED, PROMOTED, ROLLED_BACK, RUNNING, Rollouts

ModelFactory = Callable[[float], Path]
SETTINGS = rp.RolloutSettings(
    steps=(10, 50, 100), interval_s=60, mirror=0.5, min_requests=100, deadline_s=600, min_agreement=0.99
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _scorer(registry: Registry, make_model: ModelFactory) -> Registry:
    """``registry`` with scorer v1 (production), v2 and v3."""
    for value in (1, 2, 3):
        registry.register(make_model(value), "scorer", actor="alice")
    registry.set_alias("scorer", "production", 1, actor="alice")
    return registry


@pytest.fixture
def creg(db_url: str, artifacts: Path, clock: FakeClock, make_model: ModelFactory) -> Iterator[Registry]:
    registry = _scorer(open_registry(db_url, artifacts=artifacts, clock=clock), make_model)
    try:
        yield registry
    finally:
        registry.close()


def good(n: int = 200, agree: float = 1.0) -> rp.Observation:
    return rp.Observation(rp.VersionStats.of([5.0] * n), rp.VersionStats.of([5.0] * n), n, agree * n)


def interval(ro: Rollouts, clock: FakeClock, observation: rp.Observation, holder: str = "ctl") -> rp.Decision | None:
    """One interval: a server records what it saw, time passes, the controller decides."""
    current = ro.get("scorer")
    clock.advance(1)
    ro.record(current.id, current.step, "server-a", observation)
    clock.advance(SETTINGS.interval_s)
    return ro.tick("scorer", holder=holder)


def test_a_good_canary_is_promoted_with_the_alias_in_the_same_transaction(creg: Registry, clock: FakeClock) -> None:
    ro = Rollouts(creg)
    started = ro.start("scorer", 2, SETTINGS, actor="alice", reason="int8 winner")
    assert (started.from_version, started.to_version, started.status, started.weights) == (
        1,
        2,
        RUNNING,
        {1: 90, 2: 10},
    )
    assert ro.tick("scorer", holder="ctl") is None  # not due yet
    actions = [d.action for d in (interval(ro, clock, good()) for _ in range(3)) if d is not None]
    assert actions == [rp.ADVANCE, rp.ADVANCE, rp.PROMOTE]
    done = ro.get("scorer")
    assert (done.status, done.weight, creg.aliases("scorer")["production"]) == (PROMOTED, 100, 2)
    assert [v.weight for v in done.verdicts] == [10, 50, 100]
    assert done.verdicts[0].figures["candidate"]["requests"] == 200 and done.verdicts[0].figures["agreement"] == 1.0
    log = [(e.action, e.actor) for e in creg.audit_log(name="scorer")][-5:]
    assert log == [
        ("rollout.start", "alice"), ("rollout.advance", "ctl"), ("rollout.advance", "ctl"),
        ("promote", "ctl"), ("rollout.promote", "ctl"),
    ]  # fmt: skip
    promote = creg.audit_log(action="promote")[-1]
    assert promote.details["from"] == 1 and promote.details["to"] == 2 and promote.details["verdict"] == rp.PASS
    assert promote.seq + 1 == creg.audit_log(action="rollout.promote")[-1].seq
    assert creg.verify_audit().ok
    assert ro.active("scorer") is None
    ro.start("scorer", 3, SETTINGS, actor="alice", reason="next")  # a finished rollout frees the model


def test_disagreement_rolls_back_and_production_never_moves(creg: Registry, clock: FakeClock) -> None:
    ro = Rollouts(creg)
    ro.start("scorer", 2, SETTINGS, actor="alice", reason="r")
    assert interval(ro, clock, good()).action == rp.ADVANCE  # type: ignore[union-attr]
    decision = interval(ro, clock, good(agree=0.9))
    assert decision is not None and decision.action == rp.ROLLBACK
    rolled = ro.get("scorer")
    assert (rolled.status, rolled.weights, creg.aliases("scorer")["production"]) == (ROLLED_BACK, {1: 100, 2: 0}, 1)
    entry = creg.audit_log(action="rollout.rollback")[-1]
    assert entry.details["figures"]["agreement"] == pytest.approx(0.9) and "agreement" in entry.details["reasons"][0]


def test_too_few_requests_hold_then_the_deadline_rolls_back(creg: Registry, clock: FakeClock) -> None:
    ro = Rollouts(creg)
    ro.start("scorer", 2, SETTINGS, actor="alice", reason="r")
    actions = []
    while (current := ro.get("scorer")).active:
        decision = interval(ro, clock, good(n=20))
        assert decision is not None
        actions.append(decision.action)
        assert current.step == 0
    assert actions[-1] == rp.ROLLBACK and set(actions[:-1]) == {rp.HOLD}
    assert ro.get("scorer").status == ROLLED_BACK and creg.aliases("scorer")["production"] == 1


def test_only_observations_of_the_current_interval_count(creg: Registry, clock: FakeClock, db_url: str) -> None:
    ro = Rollouts(creg)
    r = ro.start("scorer", 2, SETTINGS, actor="alice", reason="r")
    clock.advance(1)
    ro.record(r.id, 0, "a", good(60))
    ro.record(r.id, 0, "b", good(60))  # two servers' halves add up
    clock.advance(60)
    assert ro.tick("scorer", holder="ctl").action == rp.ADVANCE  # type: ignore[union-attr]
    assert _rows(db_url, schema.rollout_observations) == 0  # spent rows are deleted; the verdict keeps the sums
    clock.advance(61)
    decision = ro.tick("scorer", holder="ctl")
    assert decision is not None and decision.figures["candidate"]["requests"] == 0  # the old ones are spent


def test_one_controller_per_interval(creg: Registry, clock: FakeClock) -> None:
    ro = Rollouts(creg)
    ro.start("scorer", 2, SETTINGS, actor="alice", reason="r")
    assert interval(ro, clock, good(20), holder="server-a") is not None
    assert interval(ro, clock, good(20), holder="server-b") is None  # a holds the lease
    assert ro.tick("scorer", holder="server-a") is not None  # a takes the decision b could not
    assert ro.tick("scorer", holder="server-a") is None  # once per interval
    clock.advance(3 * SETTINGS.interval_s)  # a stops renewing: its lease expires and b takes over
    assert ro.tick("scorer", holder="server-b") is not None


def test_pause_resume_abort(creg: Registry, clock: FakeClock, db_url: str, artifacts: Path) -> None:
    ro = Rollouts(creg)
    ro.start("scorer", 2, SETTINGS, actor="alice", reason="r")
    assert ro.pause("scorer", actor="bob", reason="looking").status == PAUSED
    assert interval(ro, clock, good()) is None  # paused: no decision
    with pytest.raises(InvalidArgument, match="cannot pause the rollout of scorer: it is paused"):
        ro.pause("scorer", actor="bob")
    resumed = ro.resume("scorer", actor="bob")
    assert resumed.status == RUNNING and resumed.last_decision_at == clock.now
    with open_registry(db_url, artifacts=artifacts, clock=clock) as again:  # the state is in the database
        assert Rollouts(again).get("scorer").status == RUNNING
    aborted = ro.abort("scorer", actor="bob", reason="not today")
    assert (aborted.status, aborted.weight, creg.aliases("scorer")["production"]) == (ABORTED, 0, 1)
    assert [e.action for e in creg.audit_log(name="scorer")][-4:] == [
        "rollout.start", "rollout.pause", "rollout.resume", "rollout.abort",
    ]  # fmt: skip
    with pytest.raises(NotFound, match="no active rollout"):
        ro.abort("scorer", actor="bob")


def test_approval(creg: Registry, clock: FakeClock) -> None:
    ro = Rollouts(creg)
    ro.start("scorer", 2, rp.RolloutSettings(**{**SETTINGS.__dict__, "require_approval": True}), actor="a", reason="")
    with pytest.raises(InvalidArgument, match="not waiting for approval"):
        ro.approve("scorer", actor="bob")
    assert [interval(ro, clock, good()).action for _ in range(3)] == [  # type: ignore[union-attr]
        rp.ADVANCE, rp.ADVANCE, rp.AWAIT_APPROVAL,
    ]  # fmt: skip
    assert ro.get("scorer").status == AWAITING_APPROVAL and creg.aliases("scorer")["production"] == 1
    assert ro.approve("scorer", actor="bob").status == PROMOTED
    assert creg.aliases("scorer")["production"] == 2


def _rows(db_url: str, table: Table = schema.rollouts) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("version", "settings", "error", "message"),
    [
        (9, SETTINGS, NotFound, "has no version 9"),
        (1, SETTINGS, InvalidArgument, "already serves as scorer@production"),
        (2, rp.RolloutSettings(steps=(50, 20)), InvalidArgument, "must increase"),
        (2, rp.RolloutSettings(steps=(5, 200)), InvalidArgument, "1 to 100"),
        (2, rp.RolloutSettings(min_agreement=2.0), InvalidArgument, "--min-agreement"),
    ],
)
def test_bad_starts_write_nothing(
    creg: Registry, db_url: str, version: int, settings: rp.RolloutSettings, error: type[Exception], message: str
) -> None:
    before = len(creg.audit_log())
    with pytest.raises(error, match=message):
        Rollouts(creg).start("scorer", version, settings, actor="alice", reason="r")
    assert _rows(db_url) == 0 and len(creg.audit_log()) == before


def test_one_rollout_per_model(creg: Registry, db_url: str) -> None:
    ro = Rollouts(creg)
    ro.start("scorer", 2, SETTINGS, actor="alice", reason="r")
    with pytest.raises(AlreadyExists, match="already has an active rollout"):
        ro.start("scorer", 3, SETTINGS, actor="alice", reason="r")
    assert _rows(db_url) == 1
    with pytest.raises(NotFound, match="no model named 'nope'"):
        ro.start("nope", 2, SETTINGS, actor="alice", reason="r")


def test_a_model_without_production_cannot_roll_out(creg: Registry) -> None:
    creg.remove_alias("scorer", "production", actor="alice")
    with pytest.raises(NotFound, match="no alias 'production'"):
        Rollouts(creg).start("scorer", 2, SETTINGS, actor="alice", reason="r")
    with pytest.raises(NotFound, match="has no rollout"):
        Rollouts(creg).get("scorer")


def test_rollout_entries_are_keyed_on_a_keyed_log(
    db_url: str, artifacts: Path, clock: FakeClock, make_model: ModelFactory, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "audit.key"
    create_key(key_file)
    with _scorer(open_registry(db_url, artifacts=artifacts, clock=clock, audit_key_file=key_file), make_model) as keyed:
        ro = Rollouts(keyed)
        ro.start("scorer", 2, SETTINGS, actor="alice", reason="int8 winner")
        for _ in SETTINGS.steps:  # advance, advance, promote
            interval(ro, clock, good())
        assert keyed.aliases("scorer")["production"] == 2
        ro.start("scorer", 3, SETTINGS, actor="alice", reason="next")
        ro.abort("scorer", actor="bob", reason="not now")
        report = keyed.verify_audit()
        actions = {e.action for e in keyed.audit_log(name="scorer")}
        assert {"rollout.start", "rollout.advance", "promote", "rollout.promote", "rollout.abort"} <= actions
        assert report.ok and report.keyed_entries == report.entries


def test_a_candidate_whose_residency_excludes_productions_fleet_is_refused(creg: Registry, db_url: str) -> None:
    creg.label("scorer:1", residency=["AE", "EU"], actor="alice")
    creg.label("scorer:2", residency=["EU"], actor="alice")
    before = len(creg.audit_log())
    with pytest.raises(ResidencyViolation, match=r"scorer:2 may run only in EU.*serves in AE"):
        Rollouts(creg).start("scorer", 2, SETTINGS, actor="alice", reason="r")
    with pytest.raises(ResidencyViolation, match="carries no residency label"):
        Rollouts(creg).start("scorer", 3, SETTINGS, actor="alice", reason="r")
    assert _rows(db_url) == 0 and len(creg.audit_log()) == before
    creg.label("scorer:2", residency=["AE", "EU", "US"], actor="alice")
    assert Rollouts(creg).start("scorer", 2, SETTINGS, actor="alice", reason="r").to_version == 2
