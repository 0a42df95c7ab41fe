"""Versions, idempotent registration, references, aliases with serving history, labels, deletion, lineage,
integrity and clear errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from honed.errors import InvalidArgument, InvalidModel, ModelNotFound, NotFound, Unavailable
from honed.registry import Registry, open_registry

ModelFactory = Callable[[float], Path]


def test_versions_increase_and_same_artifact_is_idempotent(reg: Registry, make_model: ModelFactory) -> None:
    v1 = reg.register(make_model(1), "fraud", actor="alice", tags=["baseline"], residency=["ae"])
    again, created = reg.register_with_status(make_model(1), "fraud", actor="bob")
    v2 = reg.register(make_model(2), "fraud", actor="alice", parent="fraud:1", recipe={"passes": ["int8"]})
    assert (v1.version, again.version, v2.version) == (1, 1, 2)
    assert not created
    assert again == v1
    assert v1.residency == ("AE",) and v1.tags == ("baseline",)
    assert v2.parent == "fraud:1" and v2.recipe == {"passes": ["int8"]}
    assert v1.size == make_model(1).stat().st_size and len(v1.sha256) == 64
    assert [v.version for v in reg.versions("fraud")] == [1, 2]
    assert [e.action for e in reg.audit_log()] == ["register", "register"]  # the duplicate wrote nothing


def test_same_artifact_under_another_name_is_a_new_model(reg: Registry, make_model: ModelFactory) -> None:
    a = reg.register(make_model(1), "a", actor="x")
    b = reg.register(make_model(1), "b", actor="x")
    assert (a.ref, b.ref) == ("a:1", "b:1") and a.sha256 == b.sha256
    assert [m.name for m in reg.models()] == ["a", "b"]


def test_resolve_refs(reg: Registry, make_model: ModelFactory) -> None:
    for i in (1, 2, 3):
        reg.register(make_model(i), "m", actor="x")
    reg.set_alias("m", "production", 2, actor="x")
    assert reg.resolve("m").version == 3
    assert reg.resolve("m:1").version == 1
    assert reg.resolve("m@production").version == 2
    assert reg.resolve("m:2").aliases == ("production",)


@pytest.mark.parametrize(
    ("ref", "error", "words"),
    [
        ("nope", NotFound, "no model named 'nope'"),
        ("m:9", NotFound, "no version 9"),
        ("m@canary", NotFound, "no alias 'canary'"),
        ("m:0", InvalidArgument, "invalid version"),
        ("m:x", InvalidArgument, "invalid version"),
        ("bad name", InvalidArgument, "invalid model name"),
        ("m@1abc", InvalidArgument, "invalid alias"),
    ],
)
def test_resolve_errors(reg: Registry, make_model: ModelFactory, ref: str, error: type, words: str) -> None:
    reg.register(make_model(1), "m", actor="x")
    with pytest.raises(error, match=words):
        reg.resolve(ref)


def test_register_bad_input(reg: Registry, make_model: ModelFactory, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        reg.register(tmp_path / "missing.onnx", "m", actor="x")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InvalidModel):
        reg.register(junk, "m", actor="x")
    with pytest.raises(NotFound, match="no model named 'ghost'"):
        reg.register(make_model(1), "m", actor="x", parent="ghost:1")
    with pytest.raises(InvalidArgument, match="actor"):
        reg.register(make_model(1), "m", actor=" ")
    with pytest.raises(InvalidArgument, match="JSON"):
        reg.register(make_model(1), "m", actor="x", recipe={"bad": float("nan")})
    with pytest.raises(InvalidArgument, match="jurisdiction"):
        reg.register(make_model(1), "m", actor="x", residency=["not a place"])
    # nothing above left a version or an audit entry behind
    assert reg.models() == [] or reg.versions("m") == []
    assert reg.audit_log() == []


def test_alias_moves_keep_serving_history(db_url: str, artifacts: Path, make_model: ModelFactory) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = iter(range(100))
    reg = open_registry(db_url, artifacts=artifacts, clock=lambda: t0 + timedelta(minutes=next(ticks)))
    try:
        for i in (1, 2, 3):
            reg.register(make_model(i), "m", actor="x")  # t0+0, +1, +2
        reg.set_alias("m", "production", 1, actor="alice")  # +3
        reg.set_alias("m", "canary", 2, actor="alice")  # +4
        reg.set_alias("m", "production", 2, actor="bob", action="promote")  # +5
        same = reg.set_alias("m", "production", "2", actor="bob")  # +6, no change: no span, no entry
        reg.set_alias("m", "production", 1, actor="carol", action="rollback")  # +7
        reg.remove_alias("m", "canary", actor="alice")  # +8
        assert same.version == 2
        assert reg.aliases("m") == {"production": 1}
        spans = [
            (s.alias, s.version, s.start - t0, None if s.end is None else s.end - t0) for s in reg.alias_history("m")
        ]
        minute = timedelta(minutes=1)
        assert spans == [
            ("production", 1, 3 * minute, 5 * minute),
            ("canary", 2, 4 * minute, 8 * minute),
            ("production", 2, 5 * minute, 7 * minute),
            ("production", 1, 7 * minute, None),
        ]
        actions = [(e.action, e.target, e.details) for e in reg.audit_log(name="m") if e.action != "register"]
        assert actions == [
            ("alias", "m@production", {"from": None, "to": 1}),
            ("alias", "m@canary", {"from": None, "to": 2}),
            ("promote", "m@production", {"from": 1, "to": 2}),
            ("rollback", "m@production", {"from": 2, "to": 1}),
            ("unalias", "m@canary", {"from": 2, "to": None}),
        ]
        with pytest.raises(NotFound, match="no version 7"):
            reg.set_alias("m", "production", 7, actor="x")
        with pytest.raises(NotFound, match="no alias 'canary'"):
            reg.remove_alias("m", "canary", actor="x")
        with pytest.raises(InvalidArgument, match="must point at a version of m"):
            reg.set_alias("m", "production", "other:1", actor="x")
    finally:
        reg.close()


def test_labels_are_audited_and_leave_the_version_alone(reg: Registry, make_model: ModelFactory) -> None:
    v = reg.register(make_model(1), "m", actor="x", tags=["a"])
    after = reg.label("m:1", actor="y", residency=["ae", "SA"], add_tags=["b"], remove_tags=["a"])
    assert after.residency == ("AE", "SA") and after.tags == ("b",)
    assert (after.sha256, after.created_at, after.created_by) == (v.sha256, v.created_at, v.created_by)
    unchanged = reg.label("m:1", actor="y", residency=["SA", "AE"])
    assert unchanged == after
    cleared = reg.label("m:1", actor="y", residency=[])
    assert cleared.residency == ()
    entries = reg.audit_log(action="label")
    assert len(entries) == 2
    assert entries[0].details["residency"] == {"before": [], "after": ["AE", "SA"]}


def test_delete_keeps_numbers_and_lineage(reg: Registry, make_model: ModelFactory) -> None:
    reg.register(make_model(1), "m", actor="x")
    reg.register(make_model(2), "m", actor="x", parent="m:1")
    reg.set_alias("m", "production", 1, actor="x")
    with pytest.raises(InvalidArgument, match="served under m@production"):
        reg.delete("m:1", actor="x")
    with pytest.raises(InvalidArgument, match="exact version"):
        reg.delete("m", actor="x")
    reg.set_alias("m", "production", 2, actor="x")
    gone = reg.delete("m:1", actor="x")
    assert gone.deleted
    with pytest.raises(NotFound, match="m:1 was deleted"):
        reg.resolve("m:1")
    assert [v.version for v in reg.versions("m")] == [2]
    assert [v.version for v in reg.versions("m", include_deleted=True)] == [1, 2]
    assert reg.lineage("m:2").ancestors[0].deleted
    # the same bytes again become a new version: numbers are never reused
    assert reg.register(make_model(1), "m", actor="x").version == 3
    with pytest.raises(NotFound, match="m:1 was deleted"):
        reg.set_alias("m", "canary", 1, actor="x")


def test_lineage_across_models(reg: Registry, make_model: ModelFactory) -> None:
    base = reg.register(make_model(1), "base", actor="x")
    q = reg.register(make_model(2), "fraud", actor="x", parent=base.ref, recipe={"pass": "int8"})
    q2 = reg.register(make_model(3), "fraud", actor="x", parent=q.ref)
    side = reg.register(make_model(4), "fraud", actor="x", parent=base.ref)
    lin = reg.lineage("fraud:2")
    assert [a.ref for a in lin.ancestors] == ["fraud:1", "base:1"]
    assert lin.ancestors[0].recipe == {"pass": "int8"}
    # descendants nearest first: children of base:1, then their children
    assert [d.ref for d in reg.lineage("base:1").descendants] == [q.ref, side.ref, q2.ref]
    assert q2.parent == "fraud:1"


def test_artifact_path_verifies_sha256_and_audits_a_mismatch(reg: Registry, make_model: ModelFactory) -> None:
    v = reg.register(make_model(1), "m", actor="x")
    path = reg.artifact_path(v)
    assert path.read_bytes() == make_model(1).read_bytes()
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(InvalidModel, match="refusing m:1"):
        reg.artifact_path(v, actor="server-1")
    path.unlink()
    with pytest.raises(ModelNotFound, match="missing from the artifact store"):
        reg.artifact_path(v, actor="server-1")
    failures = reg.audit_log(action="integrity_failure")
    assert [(e.actor, e.target, e.details["reason"]) for e in failures] == [
        ("server-1", "m:1", "sha256 mismatch"),
        ("server-1", "m:1", "missing"),
    ]
    assert reg.verify_audit().ok


def test_database_refuses_to_change_versions_or_audit_entries(
    reg: Registry, make_model: ModelFactory, db_url: str
) -> None:
    reg.register(make_model(1), "m", actor="x")
    engine = create_engine(db_url)
    try:
        for sql in (
            "UPDATE versions SET sha256 = 'x'",
            "DELETE FROM versions",
            "UPDATE audit_log SET actor = 'mallory'",
            "DELETE FROM audit_log",
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(sql))
    finally:
        engine.dispose()
    assert reg.resolve("m:1").created_by == "x"
    assert reg.verify_audit().ok


def test_reopen_is_a_noop_migration(db_url: str, artifacts: Path, make_model: ModelFactory) -> None:
    with open_registry(db_url, artifacts=artifacts) as first:
        first.register(make_model(1), "m", actor="x")
    with open_registry(db_url, artifacts=artifacts) as second:
        assert second.resolve("m").version == 1


def test_audit_entries_from_a_server(reg: Registry) -> None:
    entry = reg.audit("server-1", "refuse_request", "m@production", {"declared": "AE", "server": ["US"]})
    assert entry.seq == 1 and entry.details == {"declared": "AE", "server": ["US"]}
    with pytest.raises(InvalidArgument, match="invalid audit action"):
        reg.audit("server-1", "Refuse Request", "m")
    assert json.loads(json.dumps(reg.audit_log()[0].to_dict()))["action"] == "refuse_request"


@pytest.mark.parametrize(
    ("url", "error", "words"),
    [
        ("postgresql+psycopg://honed:secret@127.0.0.1:1/nothing", Unavailable, "cannot reach the registry database"),
        ("mysql://u@h/db", InvalidArgument, "unsupported registry URL"),
        ("sqlite://", InvalidArgument, "needs a file"),
        ("::not a url::", InvalidArgument, "invalid registry URL"),
    ],
)
def test_bad_registry_urls(url: str, error: type, words: str, tmp_path: Path) -> None:
    with pytest.raises(error, match=words) as info:
        open_registry(url, artifacts=tmp_path)
    assert "secret" not in str(info.value)


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "registry.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(Unavailable, match="cannot reach the registry database"):
        open_registry(f"sqlite:///{bogus}", artifacts=tmp_path)


def test_default_location_is_honed_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_model: ModelFactory
) -> None:
    monkeypatch.setenv("HONED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HONED_REGISTRY", raising=False)
    monkeypatch.delenv("HONED_ARTIFACTS", raising=False)
    with open_registry() as reg:
        v = reg.register(make_model(1), "m", actor="x")
        assert reg.artifact_path(v).is_relative_to(tmp_path / "home" / "artifacts")
    assert (tmp_path / "home" / "registry.db").is_file()


def test_database_from_a_newer_honed_is_refused(db_url: str, artifacts: Path) -> None:
    open_registry(db_url, artifacts=artifacts).close()
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(InvalidArgument, match="written by a newer honed"):
        open_registry(db_url, artifacts=artifacts)


@pytest.mark.parametrize("start", [None, "0001", "0002"])
def test_migrations_from_any_revision_build_the_schema_the_code_queries(
    db_url: str, artifacts: Path, start: str | None
) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from honed.registry import db as registry_db
    from honed.registry import schema

    if start is not None:
        engine = registry_db.create_registry_engine(registry_db.parse_url(db_url))
        try:
            with engine.connect() as conn:
                conn.execution_options(honed_write=True)
                with conn.begin():
                    command.upgrade(registry_db._alembic_config(conn), start)
        finally:
            engine.dispose()
    open_registry(db_url, artifacts=artifacts).close()  # upgrades to the head
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert registry_db.current_revision(conn) == registry_db._revisions()[0]
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
    finally:
        engine.dispose()
