"""``honed registry`` and ``honed audit`` through the real CLI entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.registry.conftest import tamper

ModelFactory = Callable[[float], Path]


def test_register_alias_label_show_lineage(cli, make_model: ModelFactory, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"passes": ["int8-dynamic"], "budget": 0.01}))
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"zen4-2c": {"p50_ms": 1.5, "agreement": 0.99}}))
    first = json.loads(cli("registry", "register", str(make_model(1)), "fraud-scorer", "--json"))
    assert (first["version"], first["created"], first["created_by"]) == (1, True, "alice")
    again = json.loads(cli("registry", "register", str(make_model(1)), "fraud-scorer", "--json"))
    assert (again["version"], again["created"]) == (1, False)
    out = cli(
        "registry", "register", str(make_model(2)), "fraud-scorer",
        "--parent", "fraud-scorer:1", "--recipe", str(recipe), "--profile", str(profile), "--tag", "int8",
    )  # fmt: skip
    assert "registered fraud-scorer:2" in out

    assert "fraud-scorer@production -> fraud-scorer:2" in cli("registry", "alias", "fraud-scorer", "production", "2")
    assert "fraud-scorer:2" in cli("registry", "alias", "fraud-scorer", "production")
    labelled = json.loads(cli("registry", "label", "fraud-scorer:2", "--residency", "AE", "--json"))
    assert labelled["residency"] == ["AE"]

    shown = json.loads(cli("registry", "show", "fraud-scorer@production", "--json"))
    assert shown["ref"] == "fraud-scorer:2" and shown["recipe"]["passes"] == ["int8-dynamic"]
    assert shown["profile"]["zen4-2c"]["p50_ms"] == 1.5
    assert [(h["alias"], h["version"], h["end"]) for h in shown["serving_history"]] == [("production", 2, None)]
    assert "residency  AE" in cli("registry", "show", "fraud-scorer:2")

    lineage = json.loads(cli("registry", "lineage", "fraud-scorer:2", "--json"))
    assert [a["ref"] for a in lineage["ancestors"]] == ["fraud-scorer:1"]
    assert "derived from fraud-scorer:1" in cli("registry", "lineage", "fraud-scorer:2")

    listing = json.loads(cli("registry", "list", "--json"))
    assert listing == [{"name": "fraud-scorer", "latest_version": 2, "live_versions": 2, "aliases": {"production": 2}}]
    assert [v["version"] for v in json.loads(cli("registry", "list", "fraud-scorer", "--json"))] == [1, 2]

    assert "deleted fraud-scorer:1" in cli("registry", "delete", "fraud-scorer:1")
    assert [v["version"] for v in json.loads(cli("registry", "list", "fraud-scorer", "--json"))] == [2]

    log = json.loads(cli("audit", "log", "--json"))
    assert [e["action"] for e in log] == ["register", "register", "alias", "label", "delete"]
    assert all(e["actor"] == "alice" for e in log)
    assert "audit log OK: 5 entries" in cli("audit", "verify")
    report = json.loads(cli("audit", "verify", "--json", "--anchor", f"3:{log[2]['hash']}"))
    assert report["ok"] and report["head_seq"] == 5


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("registry", "show", "nope"), "no model named 'nope'"),
        (("registry", "show", "m:7"), "no version 7"),
        (("registry", "alias", "m", "production", "9"), "no version 9"),
        (("registry", "alias", "m", "canary"), "no alias 'canary'"),
        (("registry", "delete", "m"), "exact version"),
        (("registry", "label", "m:1"), "nothing to change"),
        (("registry", "register", "/nonexistent.onnx", "m"), "model file not found"),
        (("audit", "verify", "--anchor", "x"), "invalid --anchor"),
        (("registry", "list", "--registry", "postgresql://u:pw@127.0.0.1:1/db"), "cannot reach the registry"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, make_model: ModelFactory, args: tuple[str, ...], words: str) -> None:
    cli("registry", "register", str(make_model(1)), "m")
    err = cli(*args, code=2)
    assert words in err and err.startswith("honed: error:") and err.count("\n") == 1


def test_tampered_log_fails_verify_with_exit_1(cli, make_model: ModelFactory, db_url: str) -> None:
    cli("registry", "register", str(make_model(1)), "m")
    cli("registry", "register", str(make_model(2)), "m")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            else:
                conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    finally:
        engine.dispose()
    err = cli("audit", "verify", code=1)
    assert "entry #1 (register m:1 by mallory" in err and "it was edited" in err


def test_keyed_log_export_head_and_verify(cli, make_model: ModelFactory, tmp_path: Path, raw) -> None:
    key = tmp_path / "secret" / "audit.key"
    made = json.loads(cli("audit", "key", "--out", str(key), "--json"))
    assert made["created"] and (key.stat().st_mode & 0o777) == 0o600
    assert "already there" in cli("audit", "key", "--out", str(key))
    for value in (1, 2, 3):
        cli("registry", "register", str(make_model(value)), "m", "--audit-key-file", str(key))
    err = cli("registry", "register", str(make_model(4)), "m", code=2)
    assert "the audit log is keyed" in err and err.count("\n") == 1

    head = tmp_path / "head.json"
    assert "exported audit head #3" in cli("audit", "export-head", "--out", str(head), "--key-file", str(key))
    out = cli("registry", "audit", "verify", "--audit-key-file", str(key), "--head", str(head))
    assert "audit log OK: 3 entries" in out and "3 MACs checked" in out and "exported head #3" in out
    assert "3 MACs NOT checked" in cli("audit", "verify")

    second = json.loads(cli("audit", "log", "--json"))[1]
    tamper(
        raw,
        "DELETE FROM audit_log WHERE seq = 3",
        "UPDATE audit_head SET seq = 2, hash = :h WHERE id = 1",
        params={"h": second["hash"]},
    )
    assert "audit log OK: 2 entries" in cli("audit", "verify", "--key-file", str(key))
    err = cli("audit", "verify", "--key-file", str(key), "--head", str(head), code=1)
    assert "first bad entry: #3 (removed)" in err and "its tail was deleted" in err

    other = tmp_path / "other.key"
    cli("audit", "key", "--out", str(other))
    err = cli("audit", "verify", "--key-file", str(other), code=2)
    assert "give the key file the log was written with" in err and err.count("\n") == 1
    err = cli("audit", "verify", "--key-file", str(other), "--head", str(head), code=2)
    assert "give the key file" in err and err.count("\n") == 1
    err = cli("audit", "export-head", "--out", str(tmp_path / "h2.json"), code=2)
    assert "needs the audit key" in err and not (tmp_path / "h2.json").exists()
