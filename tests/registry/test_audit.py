"""The audit chain names edited, removed and reordered entries, the way an administrator with raw database
access could tamper with them (the append-only triggers are switched off first, as such a person could)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from honed.registry import Registry
from tests.registry.conftest import tamper

ModelFactory = Callable[[float], Path]


@pytest.fixture
def filled(reg: Registry, make_model: ModelFactory) -> Registry:
    """Six entries: 3 registers, an alias, a label, a promote."""
    for i in (1, 2, 3):
        reg.register(make_model(i), "m", actor="alice")
    reg.set_alias("m", "production", 1, actor="alice")
    reg.label("m:1", actor="bob", residency=["AE"])
    reg.set_alias("m", "production", 2, actor="bob", action="promote")
    assert reg.verify_audit().ok
    return reg


def kinds(reg: Registry) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in reg.verify_audit().problems]


def test_edited_entry_is_named(filled: Registry, raw: Engine) -> None:
    tamper(raw, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 4")
    report = filled.verify_audit()
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "edited")]
    assert "entry #4 (alias m@production by mallory" in report.problems[0].message


def test_edited_details_are_named(filled: Registry, raw: Engine) -> None:
    tamper(raw, 'UPDATE audit_log SET details = \'{"from":null,"to":3}\' WHERE seq = 4')
    assert kinds(filled) == [(4, "edited")]


def test_edit_with_recomputed_hash_breaks_the_next_link(filled: Registry, raw: Engine) -> None:
    # flip the first hex digit (to '0' when it already is 'f', so the edit always changes the hash)
    tamper(
        raw,
        "UPDATE audit_log SET hash = (CASE WHEN substr(hash, 1, 1) = 'f' THEN '0' ELSE 'f' END) || substr(hash, 2) "
        "WHERE seq = 2",
    )
    # #2 no longer matches its own hash, and #3 no longer follows it
    assert kinds(filled) == [(2, "edited"), (3, "removed")]


def test_removed_entry_is_named(filled: Registry, raw: Engine) -> None:
    tamper(raw, "DELETE FROM audit_log WHERE seq = 3")
    report = filled.verify_audit()
    assert [(p.seq, p.kind) for p in report.problems] == [(3, "removed")]
    assert "entry #3 is missing" in report.problems[0].message


def test_removed_and_renumbered_is_found(filled: Registry, raw: Engine) -> None:
    tamper(
        raw,
        "DELETE FROM audit_log WHERE seq = 3",
        "UPDATE audit_log SET seq = seq - 10 WHERE seq > 3",
        "UPDATE audit_log SET seq = seq + 9 WHERE seq < 0",
    )
    problems = kinds(filled)
    assert (3, "removed") in problems


def test_removed_last_entries_are_named(filled: Registry, raw: Engine) -> None:
    tamper(raw, "DELETE FROM audit_log WHERE seq >= 5")
    report = filled.verify_audit()
    assert [(p.seq, p.kind) for p in report.problems] == [(5, "removed")]
    assert "#5..#6 is missing" in report.problems[0].message


def test_reordered_entries_are_named(filled: Registry, raw: Engine) -> None:
    tamper(
        raw,
        "UPDATE audit_log SET seq = 100 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 100",
    )
    report = filled.verify_audit()
    assert {(p.seq, p.kind) for p in report.problems} == {(2, "reordered"), (3, "reordered"), (4, "reordered")}
    assert "entries were reordered" in report.problems[0].message


def test_anchor_catches_a_fully_rewritten_log(filled: Registry, raw: Engine, make_model: ModelFactory) -> None:
    first = filled.audit_log()[0]
    assert filled.verify_audit([(first.seq, first.hash)]).ok
    tamper(raw, "DELETE FROM audit_log", "UPDATE audit_head SET seq = 0, hash = '" + "0" * 64 + "'")
    filled.audit("mallory", "register", "m:1", {"forged": True})
    assert kinds(filled) == []  # a consistent forgery from scratch passes the chain alone ...
    assert [p.kind for p in filled.verify_audit([(first.seq, first.hash)]).problems] == ["anchor"]  # ... not the anchor
