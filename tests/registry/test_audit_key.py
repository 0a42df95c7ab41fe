"""The keyed audit chain: HMACs made with a key kept outside the database catch edits, re-hashing, reordering and
stripped MACs; a signed head exported to a file catches a deleted tail; the wrong key is an error, not a verdict."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from honed.errors import InvalidArgument
from honed.registry import AuditHead, AuditKey, Registry, create_key, load_key, open_registry
from honed.registry import db as registry_db
from honed.registry.audit import entry_hash
from tests.registry.conftest import tamper

ModelFactory = Callable[[float], Path]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "audit.key"
    create_key(path)
    return path


@pytest.fixture
def keyed(db_url: str, artifacts: Path, key_file: Path, make_model: ModelFactory) -> Iterator[Registry]:
    """Six keyed entries: 3 registers, an alias, a label, a promote."""
    reg = open_registry(db_url, artifacts=artifacts, audit_key_file=key_file)
    for i in (1, 2, 3):
        reg.register(make_model(i), "m", actor="alice")
    reg.set_alias("m", "production", 1, actor="alice")
    reg.label("m:1", actor="bob", residency=["AE"])
    reg.set_alias("m", "production", 2, actor="bob", action="promote")
    try:
        yield reg
    finally:
        reg.close()


def problems(reg: Registry, head: AuditHead | None = None) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in reg.verify_audit(head=head).problems]


def rehash_from(engine: Engine, first: int) -> None:
    """Recompute every hash from entry ``first`` on and the head, as someone with the database but no key could."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).all()
    prev = next((r.hash for r in rows if r.seq == first - 1), "0" * 64)
    statements, params = [], {}
    for row in rows:
        if row.seq < first:
            continue
        digest = entry_hash(row.at, row.actor, row.action, row.target, row.details, prev)
        statements.append(f"UPDATE audit_log SET prev_hash = :p{row.seq}, hash = :h{row.seq} WHERE seq = {row.seq}")
        params.update({f"p{row.seq}": prev, f"h{row.seq}": digest})
        prev = digest
    statements.append("UPDATE audit_head SET hash = :head WHERE id = 1")
    params["head"] = prev
    tamper(engine, *statements, params=params)


def test_key_file_is_made_private_and_only_once(tmp_path: Path) -> None:
    path = tmp_path / "k" / "audit.key"
    key, made = create_key(path)
    assert made and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, made_again = create_key(path)
    assert not made_again and again.id == key.id and len(key.id) == 16
    assert create_key(tmp_path / "other.key")[0].id != key.id


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ("ab" * 32, 0o644, "chmod 600"),
        ("ab" * 32, 0o620, "chmod 600"),
        ("not hex", 0o600, "is not an audit key"),
        ("ab" * 8, 0o600, "is not an audit key"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, content: str, mode: int, words: str) -> None:
    path = tmp_path / "audit.key"
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(InvalidArgument, match=words):
        load_key(path)
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_key(tmp_path / "missing.key")


def test_keyed_chain_verifies_with_every_mac(keyed: Registry) -> None:
    report = keyed.verify_audit()
    assert report.ok and report.macs_checked and report.keyed_entries == 6
    entries = keyed.audit_log()
    assert all(e.mac is not None and e.key_id == keyed.audit_key.id for e in entries)  # type: ignore[union-attr]
    assert len({e.mac for e in entries}) == 6


def test_edited_text_is_caught_by_hash_and_mac(keyed: Registry, raw: Engine) -> None:
    tamper(raw, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 4")
    report = keyed.verify_audit()
    assert report.first_problem is not None and report.first_problem.seq == 4
    assert (4, "edited") in problems(keyed)
    assert any("does not match its MAC" in p.message for p in report.problems)


def test_edit_then_rehash_without_the_key_is_caught(keyed: Registry, raw: Engine, db_url: str, artifacts: Path) -> None:
    tamper(raw, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 4")
    rehash_from(raw, 4)
    with open_registry(db_url, artifacts=artifacts) as unkeyed:
        assert unkeyed.verify_audit().ok  # the hash chain alone is consistent again ...
    report = keyed.verify_audit()  # ... the MACs are not
    assert report.first_problem is not None and report.first_problem.seq == 4
    assert {p.kind for p in report.problems} == {"edited"}
    assert "entry #4 (alias m@production by mallory" in report.problems[0].message


def test_tampered_mac_is_caught(keyed: Registry, raw: Engine) -> None:
    tamper(
        raw,
        "UPDATE audit_log SET mac = (CASE WHEN substr(mac, 1, 1) = 'f' THEN '0' ELSE 'f' END) || substr(mac, 2) "
        "WHERE seq = 3",
    )
    # #3 fails its own MAC and #4, whose MAC covers #3's, fails too
    assert problems(keyed) == [(3, "edited"), (4, "edited")]


def test_reordered_entries_are_caught(keyed: Registry, raw: Engine) -> None:
    tamper(
        raw,
        "UPDATE audit_log SET seq = 100 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 100",
    )
    found = problems(keyed)
    assert found[0][0] == 2 and (2, "reordered") in found and (3, "edited") in found


def test_stripped_mac_is_caught(keyed: Registry, raw: Engine) -> None:
    tamper(raw, "UPDATE audit_log SET mac = NULL, key_id = NULL WHERE seq = 5")
    found = problems(keyed)
    assert found[0] == (5, "unkeyed") and (6, "edited") in found


def test_deleted_tail_with_rewritten_head_is_caught_by_the_exported_head(keyed: Registry, raw: Engine) -> None:
    head = AuditHead.from_dict(json.loads(json.dumps(keyed.export_audit_head().to_dict())))
    assert (head.seq, head.key_id) == (6, keyed.audit_key.id)  # type: ignore[union-attr]
    assert problems(keyed, head) == []
    fourth = keyed.audit_log()[3]
    tamper(
        raw,
        "DELETE FROM audit_log WHERE seq >= 5",
        "UPDATE audit_head SET seq = 4, hash = :h WHERE id = 1",
        params={"h": fourth.hash},
    )
    assert problems(keyed) == []  # a shorter chain is still a valid chain ...
    report = keyed.verify_audit(head=head)  # ... but not the one the exported head saw
    assert [(p.seq, p.kind) for p in report.problems] == [(5, "removed")]
    assert "#5..#6 is missing" in report.problems[0].message and "its tail was deleted" in report.problems[0].message


def test_rewritten_entry_at_the_exported_head_is_caught(keyed: Registry, raw: Engine) -> None:
    head = keyed.export_audit_head()
    tamper(raw, "UPDATE audit_log SET mac = NULL, key_id = NULL WHERE seq = 6")
    assert (6, "anchor") in problems(keyed, head)


def test_edited_head_file_is_refused(keyed: Registry) -> None:
    data = keyed.export_audit_head().to_dict()
    data["seq"] = 3
    with pytest.raises(InvalidArgument, match="does not match its signature"):
        keyed.verify_audit(head=AuditHead.from_dict(data))
    with pytest.raises(InvalidArgument, match="not an exported audit head"):
        AuditHead.from_dict({"seq": 3})


def test_wrong_key_is_an_error_for_verify_write_and_head(
    keyed: Registry, db_url: str, artifacts: Path, tmp_path: Path, make_model: ModelFactory
) -> None:
    head = keyed.export_audit_head()
    other = tmp_path / "other.key"
    create_key(other)
    with open_registry(db_url, artifacts=artifacts, audit_key_file=other) as wrong:
        with pytest.raises(InvalidArgument, match="give the key file the log was written with"):
            wrong.verify_audit()
        with pytest.raises(InvalidArgument, match="give the key file the log was written with"):
            wrong.register(make_model(9), "m", actor="alice")
    with pytest.raises(InvalidArgument, match="give the key file the head was exported with"):
        head.check(load_key(other))
    assert keyed.verify_audit().entries == 6  # the refused write left nothing behind


def test_writer_without_the_key_is_refused_on_a_keyed_log(
    keyed: Registry, db_url: str, artifacts: Path, make_model: ModelFactory
) -> None:
    with open_registry(db_url, artifacts=artifacts) as unkeyed:
        with pytest.raises(InvalidArgument, match="the audit log is keyed"):
            unkeyed.register(make_model(9), "m", actor="alice")
        with pytest.raises(InvalidArgument, match="needs the audit key"):
            unkeyed.export_audit_head()
        report = unkeyed.verify_audit()
        assert report.ok and not report.macs_checked and report.keyed_entries == 6


def test_unkeyed_entries_before_the_key_keep_verifying(
    reg: Registry, db_url: str, artifacts: Path, key_file: Path, make_model: ModelFactory, raw: Engine
) -> None:
    reg.register(make_model(1), "m", actor="alice")
    reg.set_alias("m", "production", 1, actor="alice")
    with open_registry(db_url, artifacts=artifacts, audit_key_file=key_file) as keyed:
        keyed.register(make_model(2), "m", actor="alice")
        report = keyed.verify_audit()
        assert report.ok and report.entries == 3 and report.keyed_entries == 1
        assert [e.mac is None for e in keyed.audit_log()] == [True, True, False]
        tamper(raw, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
        assert problems(keyed) == [(1, "edited")]  # an old entry is still checked by its hash


def test_a_registry_at_the_first_schema_upgrades_and_verifies(
    db_url: str, artifacts: Path, key_file: Path, make_model: ModelFactory
) -> None:
    from alembic import command

    engine = registry_db.create_registry_engine(registry_db.parse_url(db_url))
    try:
        with engine.connect() as conn:
            conn.execution_options(honed_write=True)
            with conn.begin():
                command.upgrade(registry_db._alembic_config(conn), "0001")
                stamp, details = "2026-01-01T00:00:00.000000+00:00", "{}"
                digest = entry_hash(stamp, "alice", "register", "old:1", details, "0" * 64)
                conn.execute(
                    text(
                        "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash) "
                        "VALUES (1, :at, 'alice', 'register', 'old:1', :d, :p, :h)"
                    ),
                    {"at": stamp, "d": details, "p": "0" * 64, "h": digest},
                )
                conn.execute(text("UPDATE audit_head SET seq = 1, hash = :h WHERE id = 1"), {"h": digest})
    finally:
        engine.dispose()
    with open_registry(db_url, artifacts=artifacts, audit_key_file=key_file) as reg:
        assert reg.verify_audit().ok
        reg.register(make_model(1), "m", actor="alice")
        report = reg.verify_audit()
        assert report.ok and (report.entries, report.keyed_entries) == (2, 1)


def test_key_from_the_environment(
    db_url: str, artifacts: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch, make_model: ModelFactory
) -> None:
    monkeypatch.setenv("HONED_AUDIT_KEY_FILE", str(key_file))
    with open_registry(db_url, artifacts=artifacts) as reg:
        assert isinstance(reg.audit_key, AuditKey) and reg.audit_key.id == load_key(key_file).id
        entry = reg.register(make_model(1), "m", actor="alice")
        assert entry.version == 1 and reg.audit_log()[0].key_id == reg.audit_key.id
