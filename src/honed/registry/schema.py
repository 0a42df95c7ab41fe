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

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("format", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("parent_id", Integer, ForeignKey("versions.id"), nullable=True),
    Column("recipe", Text, nullable=True),
    Column("profile", Text, nullable=True),
    UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
)

deletions = Table(
    "deletions",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("deleted_at", DateTime(timezone=True), nullable=False),
    Column("deleted_by", String(200), nullable=False),
)

labels = Table(
    "labels",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("value", String(128), primary_key=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    Column("set_by", String(200), nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("start_at", DateTime(timezone=True), nullable=False),
    Column("started_by", String(200), nullable=False),
    Column("end_at", DateTime(timezone=True), nullable=True),
    Column("ended_by", String(200), nullable=True),
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
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("active_model_id", Integer, nullable=True, unique=True),
    Column("from_version", Integer, nullable=False),
    Column("to_version", Integer, nullable=False),
    Column("settings", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("started_by", String(200), nullable=False),
    Column("last_decision_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Index("ix_rollouts_model", "model_id"),
)

rollout_verdicts = Table(
    "rollout_verdicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
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
    Column("id", Integer, primary_key=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.id"), nullable=False),
    Column("source", String(200), nullable=False),
    Column("step", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("stats", Text, nullable=False),
    Index("ix_rollout_observations_rollout", "rollout_id", "at"),
)

rollout_leases = Table(
    "rollout_leases",
    metadata,
    Column("rollout_id", Integer, ForeignKey("rollouts.id"), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
