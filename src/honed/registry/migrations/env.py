"""Alembic environment: runs migrations on the connection honed hands over (already inside a locked transaction)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("honed's registry migrations run through honed.registry.db.upgrade, which passes a connection")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
