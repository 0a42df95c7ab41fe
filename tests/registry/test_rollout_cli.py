"""``honed rollout`` through the real CLI entry point: the journey, the controller loop, and bad input that
gets one line on stderr, exit 2 and no change to the registry."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from honed.registry import open_registry
from honed.registry import rollout_policy as rp
from honed.registry.rollouts import Rollouts

ModelFactory = Callable[[float], Path]


@pytest.fixture
def scorer(cli, make_model: ModelFactory) -> None:
    for value in (1, 2, 3):
        cli("registry", "register", str(make_model(value)), "scorer")
    cli("registry", "alias", "scorer", "production", "1")


def _audit_length(cli) -> int:
    return len(json.loads(cli("audit", "log", "--json")))


def test_start_status_pause_resume_abort(cli, scorer: None) -> None:
    out = cli("rollout", "start", "scorer", "--to", "2", "--steps", "10,50,100", "--reason", "int8 winner")
    assert "started the rollout of scorer (v1 -> v2): v1 90%, v2 10%" in out
    shown = json.loads(cli("rollout", "status", "scorer", "--json"))
    assert (shown["status"], shown["weights"], shown["settings"]["steps"]) == (
        "running",
        {"1": 90, "2": 10},
        [10, 50, 100],
    )
    assert shown["reason"] == "int8 winner" and shown["started_by"] == "alice"
    assert shown["current_interval"]["candidate"]["requests"] == 0
    text = cli("rollout", "status", "scorer")
    assert "step 1/3" in text and "this interval so far: canary 0 requests" in text
    assert "paused" in cli("rollout", "pause", "scorer", "--reason", "lunch")
    assert "resumed" in cli("rollout", "resume", "scorer")
    assert "v1 100%, v2 0%" in cli("rollout", "abort", "scorer")
    assert json.loads(cli("rollout", "status", "scorer", "--json"))["status"] == "aborted"
    actions = [e["action"] for e in json.loads(cli("audit", "log", "--json"))]
    assert actions[-4:] == ["rollout.start", "rollout.pause", "rollout.resume", "rollout.abort"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("start", "nope", "--to", "2"), "no model named 'nope'"),
        (("start", "scorer", "--to", "9"), "scorer has no version 9"),
        (("start", "scorer", "--to", "2", "--steps", "50,25,100"), "--steps must increase"),
        (("start", "scorer", "--to", "2", "--steps", "5,150"), "percentages of traffic from 1 to 100"),
        (("start", "scorer", "--to", "2", "--steps", "5,x"), "--steps takes whole numbers"),
        (("start", "scorer", "--to", "2", "--mirror", "2"), "--mirror must be a fraction"),
        (("start", "scorer", "--to", "2", "--max-error-rate", "-1"), "--max-error-rate must be a fraction"),
        (("start", "scorer", "--to", "2", "--min-agreement", "1.5"), "--min-agreement must be between"),
        (("start", "scorer", "--to", "2", "--max-p99-ratio", "nah"), "--max-p99-ratio takes a number or 'off'"),
        (("start", "scorer", "--to", "2", "--interval", "soon"), "--interval takes a duration"),
        (("start", "scorer", "--to", "2", "--deadline", "1m"), "--deadline (60s) leaves no time"),
        (("start", "scorer", "--to", "2", "--agreement", "l2"), "unknown agreement metric"),
        (("start", "scorer", "--to", "1"), "already serves as scorer@production"),
        (("approve", "scorer"), "scorer has no active rollout"),
        (("status", "scorer"), "scorer has no rollout"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    cli, scorer: None, args: tuple[str, ...], message: str
) -> None:
    before = _audit_length(cli)
    err = cli("rollout", *args, code=2)
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert _audit_length(cli) == before


def test_second_rollout_and_approving_one_that_does_not_wait(cli, scorer: None) -> None:
    cli("rollout", "start", "scorer", "--to", "2")
    before = _audit_length(cli)
    err = cli("rollout", "start", "scorer", "--to", "3", code=2)
    assert "scorer already has an active rollout (to version 2)" in err and len(err.strip().splitlines()) == 1
    err = cli("rollout", "approve", "scorer", code=2)
    assert "not waiting for approval (it was started without --require-approval)" in err
    assert _audit_length(cli) == before


def test_start_is_refused_when_residency_forbids_the_candidate(cli, scorer: None) -> None:
    """Production may serve in AE; a candidate that may run only in EU would be refused by every server that
    serves production, so ``rollout start`` refuses it up front and writes nothing, until it is labelled."""
    cli("registry", "label", "scorer:1", "--residency", "AE")
    cli("registry", "label", "scorer:2", "--residency", "EU")
    before = _audit_length(cli)
    err = cli("rollout", "start", "scorer", "--to", "2", code=2)
    assert "scorer:2 may run only in EU, but scorer:1 (production) serves in AE" in err, err
    assert "honed registry label scorer:2 --residency" in err and len(err.strip().splitlines()) == 1
    assert "scorer has no rollout" in cli("rollout", "status", "scorer", code=2)
    assert _audit_length(cli) == before
    cli("registry", "label", "scorer:2", "--residency", "AE")
    assert "started the rollout of scorer (v1 -> v2)" in cli("rollout", "start", "scorer", "--to", "2")


def test_the_agreement_bound_defaults_to_the_optimize_gate_between_the_two_versions(
    cli, db_url: str, artifacts: Path, make_model: ModelFactory
) -> None:
    """scorer:2 is what optimize made from scorer:1 under ``--metric agreement --min 0.9``: a rollout between the
    two, either way, demands that agreement of mirrored pairs unless told otherwise; a metric that is not the
    rollout's, or no mirroring, leaves the gate out."""
    with open_registry(db_url, artifacts=artifacts) as reg:
        reg.register(make_model(1), "scorer", actor="alice")
        gate = {"gate": {"metric": "agreement", "min": 0.9, "max": None}}
        reg.register(make_model(2), "scorer", actor="alice", parent="scorer:1", profile=gate)
        reg.register(make_model(3), "scorer", actor="alice")  # no lineage with scorer:2
        reg.set_alias("scorer", "production", 2, actor="alice")

    def started(*flags: str) -> float | None:
        cli("rollout", "start", "scorer", *flags)
        bound = json.loads(cli("rollout", "status", "scorer", "--json"))["settings"]["min_agreement"]
        cli("rollout", "abort", "scorer")
        return None if bound is None else float(bound)

    assert started("--to", "1") == 0.9
    (start,) = [e for e in json.loads(cli("audit", "log", "--json")) if e["action"] == "rollout.start"]
    assert start["details"]["min_agreement_from"] == "scorer:2 (honed optimize)"
    assert started("--to", "1", "--min-agreement", "0.95") == 0.95
    assert started("--to", "1", "--agreement", "cosine") == 0.99
    assert started("--to", "3") == 0.99
    assert started("--to", "1", "--mirror", "0") is None


def _feed(db_url: str, artifacts: Path, agree: float, stop: threading.Event) -> None:
    """Stand in for the servers: record one good-sized observation per step, with the given agreement."""
    with open_registry(db_url, artifacts=artifacts) as reg:
        ro = Rollouts(reg)
        while not stop.is_set():
            current = ro.get("scorer")
            if not current.active:
                return
            n = 50
            ro.record(
                current.id,
                current.step,
                "feeder",
                rp.Observation(rp.VersionStats.of([3.0] * n), rp.VersionStats.of([3.0] * n), n, agree * n),
            )
            stop.wait(0.05)


@pytest.mark.parametrize(("agree", "code", "ending"), [(1.0, 0, "promoted"), (0.9, 1, "rolled back")])
def test_run_is_the_controller_until_the_rollout_ends(
    cli, scorer: None, db_url: str, artifacts: Path, agree: float, code: int, ending: str
) -> None:
    cli(
        "rollout", "start", "scorer", "--to", "2", "--steps", "20,100", "--interval", "300ms",
        "--min-requests", "50", "--deadline", "60s", "--mirror", "0.5",
    )  # fmt: skip
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(db_url, artifacts, agree, stop))
    feeder.start()
    try:
        out = cli("rollout", "run", "scorer", "--poll", "50ms", "--holder", "ctl", code=code)
    finally:
        stop.set()
        feeder.join()
    assert out == "" if code else f"the rollout of scorer ended: {ending}" in out  # a failed run's stderr is empty
    production = json.loads(cli("registry", "alias", "scorer", "production", "--json"))["version"]
    assert production == (2 if ending == "promoted" else 1)
    status = json.loads(cli("rollout", "status", "scorer", "--json"))
    assert status["status"] == ending.replace(" ", "_") and status["verdicts"][-1]["actor"] == "ctl"
    err = cli("rollout", "run", "scorer", code=2)
    assert "already ended" in err


def test_a_keyed_log_takes_the_audit_key_on_every_change(cli, make_model: ModelFactory, tmp_path: Path) -> None:
    key = tmp_path / "secret" / "audit.key"
    cli("audit", "key", "--out", str(key))
    for value in (1, 2):
        cli("registry", "register", str(make_model(value)), "scorer", "--audit-key-file", str(key))
    cli("registry", "alias", "scorer", "production", "1", "--audit-key-file", str(key))
    before = _audit_length(cli)
    err = cli("rollout", "start", "scorer", "--to", "2", code=2)
    assert "the audit log is keyed" in err and err.count("\n") == 1
    assert _audit_length(cli) == before
    cli("rollout", "start", "scorer", "--to", "2", "--audit-key-file", str(key))
    cli("rollout", "pause", "scorer", "--key-file", str(key))
    cli("rollout", "abort", "scorer", "--audit-key-file", str(key))
    assert "audit log OK" in cli("audit", "verify", "--key-file", str(key))
