"""Alembic migrations for the registry database; run by :func:`honed.registry.db.upgrade`, never by hand."""
