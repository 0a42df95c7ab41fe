"""Canary rollouts: the rollout itself (settings, step, status), its verdict history, the per-interval
observations every server writes, and the controller lease.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        # The model's id while the rollout is active, NULL once it ended: at most one active rollout per model.
        sa.Column("active_model_id", sa.Integer, nullable=True, unique=True),
        sa.Column("from_version", sa.Integer, nullable=False),
        sa.Column("to_version", sa.Integer, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("started_at", _TZ, nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("last_decision_at", _TZ, nullable=False),
        sa.Column("ended_at", _TZ, nullable=True),
    )
    op.create_index("ix_rollouts_model", "rollouts", ["model_id"])
    op.create_table(
        "rollout_verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("ix_rollout_verdicts_rollout", "rollout_verdicts", ["rollout_id"])
    op.create_table(
        "rollout_observations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("stats", sa.Text, nullable=False),
    )
    op.create_index("ix_rollout_observations_rollout", "rollout_observations", ["rollout_id", "at"])
    op.create_table(
        "rollout_leases",
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("rollout_leases", "rollout_observations", "rollout_verdicts", "rollouts"):
        op.drop_table(table)
