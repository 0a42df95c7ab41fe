"""Keyed audit entries: each new entry may carry an HMAC (``mac``) and the id of the key that made it (``key_id``).

Entries written before stay as they are (both columns NULL) and keep verifying by their hash. Adding nullable
columns touches no row, so the append-only triggers on ``audit_log`` are left in place.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("mac", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("key_id", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_log", "key_id")
    op.drop_column("audit_log", "mac")
