"""The model registry: immutable versions with content-addressed artifacts, aliases with serving history,
lineage, residency labels and an append-only, hash-chained audit log.

    from honed.registry import open_registry
    reg = open_registry()                       # SQLite under $HONED_HOME (default ~/.honed)
    v = reg.register("model.onnx", "fraud-scorer", actor="alice")
    reg.set_alias("fraud-scorer", "production", v.version, actor="alice")
    path = reg.artifact_path(reg.resolve("fraud-scorer@production"))   # sha256 re-checked
"""

from __future__ import annotations

import os
from pathlib import Path

from honed.registry import db, residency
from honed.registry.artifacts import ArtifactStore, LocalArtifactStore, StoredArtifact
from honed.registry.audit import AuditEntry, AuditHead, AuditProblem, AuditReport
from honed.registry.audit_key import AuditKey, create_key, find_key, load_key
from honed.registry.optimized import default_actor, register_optimized
from honed.registry.records import AliasSpan, Lineage, ModelSummary, ModelVersion
from honed.registry.refs import Ref, parse_ref
from honed.registry.store import Clock, Registry

__all__ = [
    "AliasSpan",
    "ArtifactStore",
    "AuditEntry",
    "AuditHead",
    "AuditKey",
    "AuditProblem",
    "AuditReport",
    "Lineage",
    "LocalArtifactStore",
    "ModelSummary",
    "ModelVersion",
    "Ref",
    "Registry",
    "StoredArtifact",
    "create_key",
    "default_actor",
    "find_key",
    "load_key",
    "open_registry",
    "parse_ref",
    "register_optimized",
    "residency",
]


def open_registry(
    url: str | None = None,
    *,
    artifacts: str | Path | None = None,
    clock: Clock | None = None,
    audit_key_file: str | Path | None = None,
) -> Registry:
    """Open (creating or upgrading as needed) the registry at ``url``.

    ``audit_key_file`` (else ``$HONED_AUDIT_KEY_FILE``) names the audit key that MACs new audit entries and checks
    them in :meth:`Registry.verify_audit` (see :mod:`honed.registry.audit`); a bad key file raises InvalidArgument
    before the database is touched.

    ``url`` defaults to ``$HONED_REGISTRY``, else SQLite at ``$HONED_HOME/registry.db``. Artifacts go to
    ``artifacts``, else ``$HONED_ARTIFACTS``, else an ``artifacts`` folder beside a SQLite database or under
    ``$HONED_HOME`` for PostgreSQL. A database that does not answer raises :class:`honed.errors.Unavailable`.
    """
    parsed = db.parse_url(url or os.environ.get("HONED_REGISTRY") or None)
    audit_key = find_key(audit_key_file)
    if artifacts is None:
        artifacts = os.environ.get("HONED_ARTIFACTS") or None
    if artifacts is None:
        if parsed.get_backend_name() == "sqlite":
            artifacts = Path(parsed.database or "").parent / "artifacts"
        else:
            artifacts = db.honed_home() / "artifacts"
    engine = db.create_registry_engine(parsed)
    try:
        db.check_reachable(engine)
        db.upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return Registry(engine, LocalArtifactStore(artifacts), clock=clock, audit_key=audit_key)
