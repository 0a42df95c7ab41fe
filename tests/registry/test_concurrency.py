"""Several processes writing at once, and processes killed (SIGKILL) at random points of a register.

Set HONED_TEST_KILLS to run more kill rounds than the default.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from honed.registry import open_registry, schema

_ROOT = Path(__file__).resolve().parents[2]
_WRITER = Path(__file__).with_name("_writer.py")


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT / "src"), str(_ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, str(_WRITER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"writer did not start: {line!r}\n{err}")
    return proc


def test_concurrent_registers_get_distinct_versions(db_url: str, artifacts: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    writers, each = 3, 4
    procs = [
        _spawn("burst", db_url, str(artifacts), "m", str(1000 * (w + 1)), str(each), str(go)) for w in range(writers)
    ]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    got = sorted(v for r in results for v in r)
    assert got == list(range(1, writers * each + 1))
    assert all(r == sorted(r) for r in results)  # each writer's versions increase
    with open_registry(db_url, artifacts=artifacts) as reg:
        assert [v.version for v in reg.versions("m")] == got
        assert len(reg.audit_log(action="register")) == writers * each
        assert reg.verify_audit().ok


def test_concurrent_registers_of_the_same_artifact_make_one_version(
    db_url: str, artifacts: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = [_spawn("burst", db_url, str(artifacts), "m", "7", "1", str(go)) for _ in range(2)]
    go.touch()
    results = [proc.communicate(timeout=120) for proc in procs]  # every process is reaped before any assert
    outs = []
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs == [[1], [1]]
    with open_registry(db_url, artifacts=artifacts) as reg:
        assert len(reg.versions("m")) == 1
        assert len(reg.audit_log()) == 1


def test_killed_writers_leave_no_half_written_version(
    db_url: str, artifacts: Path, make_model: Callable[[float], Path]
) -> None:
    rounds = int(os.environ.get("HONED_TEST_KILLS", "10"))
    rng = random.Random(1234)
    mid_register = 0
    for r in range(rounds):
        proc = _spawn("loop", db_url, str(artifacts), "m", str(10_000 * (r + 1)))
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.4))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err
        lines = out.strip().splitlines()
        mid_register += bool(lines) and lines[-1].startswith("begin")
    print(f"\n{rounds} writers killed, {mid_register} of them in the middle of a register")

    with open_registry(db_url, artifacts=artifacts) as reg:
        versions = reg.versions("m")
        numbers = [v.version for v in versions]
        registered = reg.audit_log(action="register")
        # every version has exactly one audit entry and every entry has its version: no orphans either way
        assert sorted(e.target for e in registered) == sorted(v.ref for v in versions)
        assert len({e.target for e in registered}) == len(registered)
        assert numbers == list(range(1, len(numbers) + 1))  # no gap left by a rolled-back register
        assert all(v.residency == ("AE",) and len(v.tags) == 1 for v in versions)  # labels written with the version
        for v in versions:
            assert reg.artifact_path(v).stat().st_size == v.size
        assert reg.verify_audit().ok
        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                latest = conn.execute(select(schema.models.c.latest_version)).scalar()
                assert latest == (numbers[-1] if numbers else None)
                assert conn.execute(select(func.count()).select_from(schema.labels)).scalar() == 2 * len(versions)
                if conn.dialect.name == "sqlite":
                    assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        finally:
            engine.dispose()
        # a later writer cleans up partial copies the killed ones left
        reg.register(make_model(-1.0), "m", actor="x")
        assert list((artifacts / "tmp").glob("*.part")) == []
