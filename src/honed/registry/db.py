"""The registry database: which URL, one engine per registry, transactions that lock, and schema upgrades.

* ``None`` means SQLite at ``$HONED_HOME/registry.db`` (``HONED_HOME`` defaults to ``~/.honed``).
* ``sqlite:///path`` (``~`` is expanded) or ``postgresql+psycopg://user:pass@host:port/db``;
  ``postgresql://`` and ``postgres://`` are taken to mean the psycopg (3) driver.

Every write runs in one transaction that first takes the registry's write lock: ``BEGIN IMMEDIATE`` on SQLite,
a row lock on the audit head (``SELECT ... FOR UPDATE``) on PostgreSQL. Writers therefore queue instead of
racing, every version number and audit sequence number is handed out once, and a process killed mid-write
leaves nothing behind but a rolled-back transaction.

Schema changes are Alembic migrations (``migrations/versions/``). :func:`upgrade` runs them when a registry is
opened, under the same lock (plus an advisory lock on PostgreSQL), so two processes opening a fresh database at
once do not both create it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, insert, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from honed.errors import InvalidArgument, Unavailable

_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x686F6E6564  # "honed": the advisory-lock key for schema upgrades
_WRITE = "honed_write"


def honed_home() -> Path:
    return Path(os.environ.get("HONED_HOME") or "~/.honed").expanduser()


def default_url() -> str:
    return f"sqlite:///{honed_home() / 'registry.db'}"


def parse_url(url: str | None) -> URL:
    """Normalise a registry URL; raise InvalidArgument for anything that is not SQLite or PostgreSQL."""
    raw = url or default_url()
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise InvalidArgument(
            f"invalid registry URL {raw!r}: use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
        ) from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.get_driver_name() not in ("psycopg", "postgresql", "postgres"):
            raise InvalidArgument(f"registry URL {safe_url(parsed)}: only the psycopg driver is supported")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise InvalidArgument("a registry needs a file: use sqlite:///PATH (an in-memory database would be lost)")
        return parsed.set(database=str(Path(parsed.database).expanduser()))
    raise InvalidArgument(
        f"unsupported registry URL {safe_url(parsed)}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def create_registry_engine(url: URL) -> Engine:
    """An engine for ``url`` whose transactions behave as the module docstring says."""
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself, so writes can take the lock up front.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 60000")
            _wal(cur)
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

        return engine
    return create_engine(url, connect_args={"connect_timeout": 5}, pool_pre_ping=True)


def _wal(cur: Any, patience_s: float = 60.0) -> None:
    """Put the database in WAL mode (it stays so in the file). Two processes opening a new database at once can
    get "database is locked" here without SQLite's busy handler ever waiting, so wait and retry like it would."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check_reachable(engine: Engine) -> None:
    """Connect once; a database that does not answer becomes a clear Unavailable error."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, DBAPIError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise Unavailable(
            f"cannot reach the registry database at {safe_url(engine.url)}: {reason}; "
            "check the URL (--registry or HONED_REGISTRY) and that the database server is running"
        ) from exc
    except NoSuchModuleError as exc:
        raise InvalidArgument(f"no database driver for {safe_url(engine.url)}: {exc}") from exc


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the registry's write lock; commits on success, rolls back on any error."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        yield conn


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _revisions() -> tuple[str, set[str]]:
    """The head revision and every revision this honed knows."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("the registry's migrations have no head revision")
    return head, {s.revision for s in script.walk_revisions()}


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op when it is already there)."""
    head, known = _revisions()
    with engine.connect() as conn:
        current = current_revision(conn)
        conn.rollback()
    if current == head:
        return
    if current is not None and current not in known:
        raise InvalidArgument(
            f"the registry database at {safe_url(engine.url)} has schema revision {current}, which this version "
            "of honed does not know: it was written by a newer honed; upgrade honed to use it"
        )
    from alembic import command

    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            if current_revision(conn) != head:
                command.upgrade(_alembic_config(conn), "head")


def insert_row(conn: Connection, table: Table, **values: Any) -> int:
    """Insert one row into ``table`` (whose key is ``id``) and return the ``id`` the database gave it."""
    return int(conn.execute(insert(table).values(**values).returning(table.c.id)).scalar_one())
