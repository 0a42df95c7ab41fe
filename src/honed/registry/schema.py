"""The registry's tables (SQLAlchemy Core). The database is created and upgraded only by the migrations in
``migrations/versions/``; these definitions are what the code queries and must match the latest migration.

Immutability is part of the schema: ``versions`` rows are never updated or deleted (a deletion is a row in
``deletions``; labels live in ``labels``) and ``audit_log`` is append-only; database triggers refuse anything else.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first audit entry."""


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _refers(name: str, table: str, *, nullable: bool = False, primary_key: bool = False) -> Column[int]:
    """A column holding the ``id`` of a row of ``table``."""
    return Column(name, Integer, ForeignKey(f"{table}.id"), nullable=nullable, primary_key=primary_key)


def _stamp(at: str, by: str, *, nullable: bool = False) -> tuple[Column[object], Column[str]]:
    """When something was done and who did it: every change the registry keeps names both."""
    return Column(at, DateTime(timezone=True), nullable=nullable), Column(by, String(200), nullable=nullable)


models = Table(
    "models",
    metadata,
    _id(),
    Column("name", String(128), nullable=False, unique=True),
    Column("latest_version", Integer, nullable=False),
    *_stamp("created_at", "created_by"),
)

versions = Table(
    "versions",
    metadata,
    _id(),
    _refers("model_id", "models"),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("format", String(32), nullable=False),
    *_stamp("created_at", "created_by"),
    _refers("parent_id", "versions", nullable=True),
    Column("recipe", Text, nullable=True),
    Column("profile", Text, nullable=True),
    UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
)

deletions = Table(
    "deletions",
    metadata,
    _refers("version_id", "versions", primary_key=True),
    *_stamp("deleted_at", "deleted_by"),
)

labels = Table(
    "labels",
    metadata,
    _refers("version_id", "versions", primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("value", String(128), primary_key=True),
)

aliases = Table(
    "aliases",
    metadata,
    _refers("model_id", "models", primary_key=True),
    Column("alias", String(64), primary_key=True),
    _refers("version_id", "versions"),
    *_stamp("set_at", "set_by"),
)

alias_history = Table(
    "alias_history",
    metadata,
    _id(),
    _refers("model_id", "models"),
    Column("alias", String(64), nullable=False),
    _refers("version_id", "versions"),
    *_stamp("start_at", "started_by"),
    *_stamp("end_at", "ended_by", nullable=True),
    Index("ix_alias_history_model_alias", "model_id", "alias"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(300), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=True),
    Column("key_id", String(16), nullable=True),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

rollouts = Table(
    "rollouts",
    metadata,
    _id(),
    _refers("model_id", "models"),
    Column("active_model_id", Integer, nullable=True, unique=True),
    Column("from_version", Integer, nullable=False),
    Column("to_version", Integer, nullable=False),
    Column("settings", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    *_stamp("started_at", "started_by"),
    Column("last_decision_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Index("ix_rollouts_model", "model_id"),
)

rollout_verdicts = Table(
    "rollout_verdicts",
    metadata,
    _id(),
    _refers("rollout_id", "rollouts"),
    *_stamp("at", "actor"),
    Column("step", Integer, nullable=False),
    Column("weight", Integer, nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("details", Text, nullable=False),
    Index("ix_rollout_verdicts_rollout", "rollout_id"),
)

rollout_observations = Table(
    "rollout_observations",
    metadata,
    _id(),
    _refers("rollout_id", "rollouts"),
    Column("source", String(200), nullable=False),
    Column("step", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("stats", Text, nullable=False),
    Index("ix_rollout_observations_rollout", "rollout_id", "at"),
)

rollout_leases = Table(
    "rollout_leases",
    metadata,
    _refers("rollout_id", "rollouts", primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
