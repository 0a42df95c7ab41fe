"""Registry fixtures: every test runs against SQLite, and against PostgreSQL when HONED_TEST_POSTGRES_URL is set
(each test then gets its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from honed.cli.main import run
from honed.registry import Registry, open_registry

POSTGRES_URL = os.environ.get("HONED_TEST_POSTGRES_URL")

ModelFactory = Callable[[float], Path]


def write_model(path: Path, value: float) -> Path:
    """A tiny valid ONNX graph y = x + value; different values give different artifacts."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    c = helper.make_tensor("c", TensorProto.FLOAT, [1], [float(value)])
    graph = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "add", [x], [y], [c])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def make_model(tmp_path: Path) -> ModelFactory:
    folder = tmp_path / "models"
    folder.mkdir()

    def make(value: float) -> Path:
        return write_model(folder / f"m{value:g}.onnx", value)

    return make


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres", marks=pytest.mark.skipif(not POSTGRES_URL, reason="HONED_TEST_POSTGRES_URL is not set")
        ),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'registry.db'}"
        return
    if POSTGRES_URL is None:  # pragma: no cover - skipped above
        pytest.skip("HONED_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def reg(db_url: str, artifacts: Path) -> Iterator[Registry]:
    registry = open_registry(db_url, artifacts=artifacts)
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def cli(
    db_url: str, artifacts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """The real CLI entry point on this test's registry: ``cli(*args, code=0)`` -> stdout (stderr when failing)."""
    monkeypatch.setenv("HONED_REGISTRY", db_url)
    monkeypatch.setenv("HONED_ARTIFACTS", str(artifacts))
    monkeypatch.setenv("HONED_ACTOR", "alice")

    def call(*args: str, code: int = 0) -> str:
        capsys.readouterr()
        rc = run(list(args))
        out, err = capsys.readouterr()
        assert rc == code, f"exit {rc}, stdout {out!r}, stderr {err!r}"
        return out if code == 0 else err

    return call


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    """A plain engine on the registry's database, for tampering with it as an administrator could."""
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def _unlocked(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        yield conn


def tamper(engine: Engine, *statements: str, params: dict[str, object] | None = None) -> None:
    """Run ``statements`` with the audit log's append-only triggers off (they stay off on SQLite); with
    ``params``, they are SQLAlchemy text with ``:name`` binds, else raw SQL."""
    for conn in _unlocked(engine):
        for sql in statements:
            if params is None:
                conn.exec_driver_sql(sql)
            else:
                conn.execute(text(sql), params)
