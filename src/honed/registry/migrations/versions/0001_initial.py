"""The first registry schema: models, immutable versions, labels, deletions, aliases with serving history,
and the append-only hash-chained audit log with its head.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_GENESIS = "0" * 64
_TZ = sa.DateTime(timezone=True)

_PG_REFUSE = """
CREATE FUNCTION honed_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'honed: % on % is refused: the table is append-only', TG_OP, TG_TABLE_NAME;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=True),
        sa.Column("recipe", sa.Text, nullable=True),
        sa.Column("profile", sa.Text, nullable=True),
        sa.UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
    )
    op.create_index("ix_versions_sha256", "versions", ["sha256"])
    op.create_table(
        "deletions",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
        sa.Column("deleted_at", _TZ, nullable=False),
        sa.Column("deleted_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "labels",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(128), primary_key=True),
    )
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("set_at", _TZ, nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("start_at", _TZ, nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("end_at", _TZ, nullable=True),
        sa.Column("ended_by", sa.String(200), nullable=True),
    )
    op.create_index("ix_alias_history_model_alias", "alias_history", ["model_id", "alias"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": _GENESIS}])

    # Versions are immutable and the audit log is append-only: the database itself refuses the rest.
    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_REFUSE)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION honed_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER versions_immutable BEFORE UPDATE OR DELETE ON versions "
            "FOR EACH ROW EXECUTE FUNCTION honed_refuse_change()"
        )
    else:
        for table in ("audit_log", "versions"):
            for what in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{what.lower()} BEFORE {what} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'honed: {what} on {table} is refused: the table is append-only'); END"
                )


def downgrade() -> None:
    for table in ("audit_head", "audit_log", "alias_history", "aliases", "labels", "deletions", "versions", "models"):
        op.drop_table(table)
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS honed_refuse_change()")
