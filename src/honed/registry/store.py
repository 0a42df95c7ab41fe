"""The registry: immutable model versions with content-addressed artifacts, labels, aliases with serving
history, lineage, and the hash-chained audit log every change is written to in the same transaction.

Every mutation is one database transaction under the registry's write lock (see :mod:`honed.registry.db`): the
version (or alias move, label change, deletion) and its audit entry commit together or not at all. Artifact bytes
are copied into the content-addressed store *before* that transaction, so a crash leaves at most an unreferenced
blob, never a version without its bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Required, TypedDict, Unpack

import onnx
from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, func, insert, or_, select, update

from honed.canonical import canonical_json
from honed.errors import InvalidArgument, InvalidModel, ModelNotFound, NotFound
from honed.model import check_model, file_sha256, load_model, resolve_model_path
from honed.model.artifact import check_ir, is_ir
from honed.registry import audit as audit_chain
from honed.registry import db, schema
from honed.registry import ir as ir_store
from honed.registry.artifacts import ArtifactStore
from honed.registry.audit_key import AuditKey
from honed.registry.records import AliasSpan, Lineage, ModelSummary, ModelVersion
from honed.registry.refs import Ref, check_alias, check_name, check_tag, normalize_jurisdiction, parse_ref

Clock = Callable[[], datetime]

_V = schema.versions
_M = schema.models
_TAG = "tag"
_RESIDENCY = "residency"


class RegisterOptions(TypedDict, total=False):
    """What :meth:`Registry.register` takes besides the file and the name: see :meth:`Registry.register_with_status`."""

    actor: Required[str]
    parent: str | None
    recipe: Mapping[str, Any] | None
    profile: Mapping[str, Any] | None
    tags: Iterable[str]
    residency: Iterable[str]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _json_text(value: Mapping[str, Any] | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"the {what} must be a JSON object (a dict), not {type(value).__name__}")
    try:
        return canonical_json(dict(value), strict=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"the {what} cannot be stored as JSON: {exc}") from exc


def _detect_format(path: Path) -> str:
    """Validate the artifact and name its format: self-contained ONNX files, or OpenVINO IR (``.xml`` + ``.bin``)."""
    if is_ir(path):
        check_ir(path)
        return ir_store.FORMAT
    model = load_model(path, check=False, load_external_data=False)
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidArgument(
                f"{path} keeps its weights in external data files; the registry stores single-file ONNX models only"
            )
    check_model(model, path)
    return "onnx"


class Registry:
    """A model registry on one database and one artifact store. Open it with :func:`honed.registry.open_registry`."""

    def __init__(
        self, engine: Engine, store: ArtifactStore, *, clock: Clock | None = None, audit_key: AuditKey | None = None
    ) -> None:
        self._engine = engine
        self.store = store
        self._clock = clock or _utc_now
        self.audit_key = audit_key
        """The key that MACs new audit entries (None: unkeyed, refused once the log is keyed)."""

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return db.safe_url(self._engine.url)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        return _aware(self._clock())

    @property
    def engine(self) -> Engine:
        """The database engine, for modules that keep their own tables in the registry (rollouts)."""
        return self._engine

    def now(self) -> datetime:
        """The registry's clock (UTC), which stamps every change."""
        return self._now()

    def model_id_in(self, conn: Connection, name: str) -> int:
        """The id of model ``name`` inside the caller's transaction; NotFound names the models there are."""
        return self._model_id(conn, check_name(name))

    def resolve_in(self, conn: Connection, ref: Ref) -> ModelVersion:
        """:meth:`resolve` inside the caller's transaction."""
        return self._load(conn, _V.c.id == self._resolve_id(conn, ref))[0]

    # -- register ----------------------------------------------------------------------------------------------
    def register(self, model_path: str | Path, name: str, **options: Unpack[RegisterOptions]) -> ModelVersion:
        """Register ``model_path`` as the next version of ``name``; the same artifact again returns its version."""
        return self.register_with_status(model_path, name, **options)[0]

    def register_with_status(
        self,
        model_path: str | Path,
        name: str,
        *,
        actor: str,
        parent: str | None = None,
        recipe: Mapping[str, Any] | None = None,
        profile: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        residency: Iterable[str] = (),
    ) -> tuple[ModelVersion, bool]:
        """Like :meth:`register`, also saying whether a new version was created (False: it already existed)."""
        check_name(name)
        actor = audit_chain.check_actor(actor)
        tag_set = sorted({check_tag(t) for t in tags})
        residency_set = sorted({normalize_jurisdiction(j) for j in residency})
        parent_ref = parse_ref(parent) if parent is not None else None
        recipe_text = _json_text(recipe, "recipe")
        profile_text = _json_text(profile, "profile")
        path = resolve_model_path(model_path)
        fmt = _detect_format(path)
        stored = ir_store.put_ir(self.store, path) if fmt == ir_store.FORMAT else self.store.put(path)

        with db.write_transaction(self._engine) as conn:
            now = self._now()
            model_row = conn.execute(select(_M.c.id, _M.c.latest_version).where(_M.c.name == name)).first()
            if model_row is None:
                model_id = db.insert_row(conn, _M, name=name, latest_version=0, created_at=now, created_by=actor)
                latest = 0
            else:
                model_id, latest = model_row.id, model_row.latest_version
                existing = conn.execute(
                    select(_V.c.id)
                    .where(_V.c.model_id == model_id, _V.c.sha256 == stored.sha256, ~self._is_deleted())
                    .order_by(_V.c.version)
                ).first()
                if existing is not None:
                    return self._load(conn, _V.c.id == existing.id)[0], False
            parent_id = self._resolve_id(conn, parent_ref) if parent_ref is not None else None
            number = latest + 1
            conn.execute(update(_M).where(_M.c.id == model_id).values(latest_version=number))
            version_id = db.insert_row(
                conn,
                _V,
                model_id=model_id,
                version=number,
                sha256=stored.sha256,
                size=stored.size,
                format=fmt,
                created_at=now,
                created_by=actor,
                parent_id=parent_id,
                recipe=recipe_text,
                profile=profile_text,
            )
            created = self._labelled(conn, version_id, tag_set, residency_set)
            details = {"sha256": stored.sha256, "size": stored.size, "format": fmt, "parent": created.parent}
            details |= {"tags": tag_set, "residency": residency_set}
            audit_chain.append(
                conn, key=self.audit_key, at=now, actor=actor, action="register", target=created.ref, details=details
            )
            return created, True

    # -- reading -----------------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> ModelVersion:
        """``name`` (latest live version), ``name:3`` or ``name@alias`` -> that version."""
        parsed = parse_ref(ref)
        with db.read_transaction(self._engine) as conn:
            return self._load(conn, _V.c.id == self._resolve_id(conn, parsed))[0]

    def versions(self, name: str, *, include_deleted: bool = False) -> list[ModelVersion]:
        with db.read_transaction(self._engine) as conn:
            model_id = self._model_id(conn, check_name(name))
            cond: ColumnElement[bool] = _V.c.model_id == model_id
            if not include_deleted:
                cond = and_(cond, ~self._is_deleted())
            return self._load(conn, cond)

    def models(self) -> list[ModelSummary]:
        with db.read_transaction(self._engine) as conn:
            live = (
                select(_V.c.model_id, func.count().label("n"))
                .where(~self._is_deleted())
                .group_by(_V.c.model_id)
                .subquery()
            )
            rows = conn.execute(
                select(_M.c.id, _M.c.name, _M.c.latest_version, live.c.n)
                .select_from(_M.outerjoin(live, live.c.model_id == _M.c.id))
                .order_by(_M.c.name)
            ).all()
            alias_rows = conn.execute(
                select(schema.aliases.c.model_id, schema.aliases.c.alias, _V.c.version).join(
                    _V, _V.c.id == schema.aliases.c.version_id
                )
            ).all()
        by_model: dict[int, dict[str, int]] = {}
        for a in alias_rows:
            by_model.setdefault(a.model_id, {})[a.alias] = a.version
        return [ModelSummary(r.name, r.latest_version, r.n or 0, by_model.get(r.id, {})) for r in rows]

    def aliases(self, name: str) -> dict[str, int]:
        with db.read_transaction(self._engine) as conn:
            model_id = self._model_id(conn, check_name(name))
            rows = conn.execute(
                select(schema.aliases.c.alias, _V.c.version)
                .join(_V, _V.c.id == schema.aliases.c.version_id)
                .where(schema.aliases.c.model_id == model_id)
                .order_by(schema.aliases.c.alias)
            ).all()
        return {r.alias: r.version for r in rows}

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasSpan]:
        """Which version served under which alias, from when to when (oldest first)."""
        h = schema.alias_history
        with db.read_transaction(self._engine) as conn:
            model_id = self._model_id(conn, check_name(name))
            q = select(h, _V.c.version).join(_V, _V.c.id == h.c.version_id).where(h.c.model_id == model_id)
            if alias is not None:
                q = q.where(h.c.alias == check_alias(alias))
            rows = conn.execute(q.order_by(h.c.id)).all()
        return [
            AliasSpan(
                name,
                r.alias,
                r.version,
                _aware(r.start_at),
                r.started_by,
                None if r.end_at is None else _aware(r.end_at),
                r.ended_by,
            )
            for r in rows
        ]

    def lineage(self, ref: str) -> Lineage:
        """The version, its ancestors through ``parent`` (nearest first) and every version derived from it."""
        parsed = parse_ref(ref)
        with db.read_transaction(self._engine) as conn:
            vid = self._resolve_id(conn, parsed)
            version = self._load(conn, _V.c.id == vid)[0]
            ancestors: list[ModelVersion] = []
            seen = {vid}
            parent_id = conn.execute(select(_V.c.parent_id).where(_V.c.id == vid)).scalar_one()
            while parent_id is not None and parent_id not in seen:
                seen.add(parent_id)
                ancestors.append(self._load(conn, _V.c.id == parent_id)[0])
                parent_id = conn.execute(select(_V.c.parent_id).where(_V.c.id == parent_id)).scalar_one()
            descendants: list[ModelVersion] = []
            frontier = [vid]
            while frontier:
                children = [
                    c
                    for c in conn.execute(select(_V.c.id).where(_V.c.parent_id.in_(frontier))).scalars()
                    if c not in seen
                ]
                seen.update(children)
                if children:
                    descendants.extend(self._load(conn, _V.c.id.in_(children)))
                frontier = children
        return Lineage(version, ancestors, descendants)

    # -- aliases -----------------------------------------------------------------------------------------------
    def set_alias(
        self, name: str, alias: str, version: int | str, *, actor: str, action: str = "alias"
    ) -> ModelVersion:
        """Point ``name@alias`` at ``version`` atomically, closing the previous serving span.

        ``action`` names the change in the audit log (``alias``; a server passes ``promote`` or ``rollback``).
        """
        check_name(name)
        check_alias(alias)
        actor = audit_chain.check_actor(actor)
        audit_chain.check_action(action)
        target = self._version_ref(name, version)
        with db.write_transaction(self._engine) as conn:
            return self.move_alias_in(conn, target, alias, actor=actor, action=action, now=self._now())

    def move_alias_in(
        self,
        conn: Connection,
        target: Ref,
        alias: str,
        *,
        actor: str,
        action: str,
        now: datetime,
        details: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """:meth:`set_alias` inside the caller's write transaction (so another change commits with the move);
        ``details`` are added to the audit entry's."""
        a, h = schema.aliases, schema.alias_history
        name = target.name
        vid = self._resolve_id(conn, target)
        model_id = self._model_id(conn, name)
        current = conn.execute(
            select(a.c.version_id, _V.c.version)
            .join(_V, _V.c.id == a.c.version_id)
            .where(a.c.model_id == model_id, a.c.alias == alias)
        ).first()
        if current is not None and current.version_id == vid:
            return self._load(conn, _V.c.id == vid)[0]
        self._end_span(conn, model_id, alias, now, actor)
        if current is None:
            conn.execute(insert(a).values(model_id=model_id, alias=alias, version_id=vid, set_at=now, set_by=actor))
        else:
            conn.execute(
                update(a)
                .where(a.c.model_id == model_id, a.c.alias == alias)
                .values(version_id=vid, set_at=now, set_by=actor)
            )
        conn.execute(insert(h).values(model_id=model_id, alias=alias, version_id=vid, start_at=now, started_by=actor))
        moved = self._load(conn, _V.c.id == vid)[0]
        audit_chain.append(
            conn,
            key=self.audit_key,
            at=now,
            actor=actor,
            action=action,
            target=f"{name}@{alias}",
            details={**(details or {}), "from": None if current is None else current.version, "to": moved.version},
        )
        return moved

    def remove_alias(self, name: str, alias: str, *, actor: str) -> None:
        check_name(name)
        check_alias(alias)
        actor = audit_chain.check_actor(actor)
        a = schema.aliases
        with db.write_transaction(self._engine) as conn:
            now = self._now()
            model_id = self._model_id(conn, name)
            current = conn.execute(
                select(_V.c.version)
                .join(a, _V.c.id == a.c.version_id)
                .where(a.c.model_id == model_id, a.c.alias == alias)
            ).first()
            if current is None:
                raise NotFound(f"{name} has no alias {alias!r}{self._alias_hint(conn, model_id)}")
            self._end_span(conn, model_id, alias, now, actor)
            conn.execute(delete(a).where(a.c.model_id == model_id, a.c.alias == alias))
            audit_chain.append(
                conn,
                key=self.audit_key,
                at=now,
                actor=actor,
                action="unalias",
                target=f"{name}@{alias}",
                details={"from": current.version, "to": None},
            )

    # -- labels and deletion -----------------------------------------------------------------------------------
    def label(
        self,
        ref: str,
        *,
        actor: str,
        residency: Iterable[str] | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
    ) -> ModelVersion:
        """Set the residency labels (``residency``; an empty list clears them) and add or remove tags."""
        parsed = parse_ref(ref)
        actor = audit_chain.check_actor(actor)
        new_res = None if residency is None else sorted({normalize_jurisdiction(j) for j in residency})
        add = {check_tag(t) for t in add_tags}
        remove = {check_tag(t) for t in remove_tags}
        lab = schema.labels
        with db.write_transaction(self._engine) as conn:
            now = self._now()
            vid = self._resolve_id(conn, parsed)
            before = self._load(conn, _V.c.id == vid)[0]
            tags_after = sorted((set(before.tags) | add) - remove)
            res_after = list(before.residency) if new_res is None else new_res
            if tags_after == list(before.tags) and res_after == list(before.residency):
                return before
            conn.execute(delete(lab).where(lab.c.version_id == vid))
            after = self._labelled(conn, vid, tags_after, res_after)
            changes = {
                "tags": {"before": list(before.tags), "after": tags_after},
                "residency": {"before": list(before.residency), "after": res_after},
            }
            audit_chain.append(
                conn, key=self.audit_key, at=now, actor=actor, action="label", target=after.ref, details=changes
            )
            return after

    def delete(self, ref: str, *, actor: str) -> ModelVersion:
        """Delete ``name:N``: it no longer resolves; its number is never reused; its record and lineage stay."""
        parsed = parse_ref(ref)
        if parsed.version is None:
            raise InvalidArgument(f"name the exact version to delete, e.g. {parsed.name}:3 (not {ref!r})")
        actor = audit_chain.check_actor(actor)
        with db.write_transaction(self._engine) as conn:
            now = self._now()
            vid = self._resolve_id(conn, parsed)
            pointing = self._alias_names(conn, schema.aliases.c.version_id == vid)
            if pointing:
                names = ", ".join(f"{parsed.name}@{p}" for p in pointing)
                raise InvalidArgument(
                    f"{parsed} is served under {names}; move or remove the alias first "
                    f"(honed registry alias {parsed.name} {pointing[0]} VERSION)"
                )
            conn.execute(insert(schema.deletions).values(version_id=vid, deleted_at=now, deleted_by=actor))
            gone = self._load(conn, _V.c.id == vid)[0]
            audit_chain.append(
                conn,
                at=now,
                actor=actor,
                action="delete",
                target=gone.ref,
                details={"sha256": gone.sha256},
                key=self.audit_key,
            )
            return gone

    # -- integrity ---------------------------------------------------------------------------------------------
    def artifact_path(self, version: ModelVersion, *, actor: str = "honed") -> Path:
        """The artifact's local file, after re-checking its sha256; a mismatch is audited and refused.

        For OpenVINO IR: the ``model.xml`` (with ``model.bin`` beside it) laid out from its checked blobs."""
        try:
            path = self.store.local_path(version.sha256)
        except ModelNotFound as exc:
            self.audit(actor, "integrity_failure", version.ref, {"reason": "missing", "expected": version.sha256})
            raise ModelNotFound(f"{version.ref}: {exc}") from exc
        actual = file_sha256(path)
        if actual != version.sha256:
            self.audit(
                actor,
                "integrity_failure",
                version.ref,
                {"reason": "sha256 mismatch", "expected": version.sha256, "actual": actual},
            )
            raise InvalidModel(
                f"refusing {version.ref}: its artifact {path} has sha256 {actual}, but the registry recorded "
                f"{version.sha256}; the file was changed or corrupted (register the model again)"
            )
        if version.format != ir_store.FORMAT:
            return path
        try:
            return ir_store.lay_out(self.store, version.sha256, path)
        except (ModelNotFound, InvalidModel) as exc:
            self.audit(actor, "integrity_failure", version.ref, {"reason": str(exc), "expected": version.sha256})
            raise InvalidModel(f"refusing {version.ref}: {exc} (register the model again)") from exc

    # -- audit -------------------------------------------------------------------------------------------------
    def audit(
        self, actor: str, action: str, target: str, details: Mapping[str, Any] | None = None
    ) -> audit_chain.AuditEntry:
        """Append one entry (e.g. a server's load, unload, promote, rollback or refusal) to the audit log."""
        if not isinstance(target, str) or not target or len(target) > 300:
            raise InvalidArgument("an audit entry needs a target (what it is about), up to 300 characters")
        with db.write_transaction(self._engine) as conn:
            return audit_chain.append(
                conn, at=self._now(), actor=actor, action=action, target=target, details=details, key=self.audit_key
            )

    def audit_log(
        self, *, limit: int | None = None, name: str | None = None, action: str | None = None
    ) -> list[audit_chain.AuditEntry]:
        """The most recent ``limit`` entries (all when None), oldest first; optionally about one model or action."""
        log = schema.audit_log
        q = select(log).order_by(log.c.seq.desc())
        if name is not None:
            check_name(name)
            prefix = func.substr(log.c.target, 1, len(name) + 1)
            q = q.where(or_(log.c.target == name, prefix.in_([f"{name}:", f"{name}@"])))
        if action is not None:
            q = q.where(log.c.action == action)
        if limit is not None:
            if limit < 1:
                raise InvalidArgument("--limit must be at least 1")
            q = q.limit(limit)
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(q).all()
        return [audit_chain.row_to_entry(r) for r in reversed(rows)]

    def verify_audit(
        self, anchors: Iterable[tuple[int, str]] = (), *, head: audit_chain.AuditHead | None = None
    ) -> audit_chain.AuditReport:
        """Check the whole chain (and its MACs, when the registry has the audit key); ``anchors`` are (seq, hash)
        pairs and ``head`` a head exported earlier (:meth:`export_audit_head`), recorded elsewhere, that must hold."""
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(select(schema.audit_log).order_by(schema.audit_log.c.seq)).all()
            last = conn.execute(select(schema.audit_head).where(schema.audit_head.c.id == 1)).one()
        report = audit_chain.verify_chain(rows, last.seq, last.hash, key=self.audit_key, exported=head)
        stored = {r.seq: r.hash for r in rows}
        for seq, digest in anchors:
            if stored.get(seq) != digest:
                report.problems.append(
                    audit_chain.AuditProblem(
                        seq,
                        "anchor",
                        f"entry #{seq} no longer has the anchored hash {digest[:16]}...: it was rewritten",
                    )
                )
        return report

    def export_audit_head(self) -> audit_chain.AuditHead:
        """The log's last entry, signed with the audit key, to keep outside the database."""
        if self.audit_key is None:
            raise InvalidArgument("exporting a signed audit head needs the audit key: give --audit-key-file")
        with db.read_transaction(self._engine) as conn:
            last = conn.execute(select(schema.audit_head).where(schema.audit_head.c.id == 1)).one()
            mac, keyed_by = audit_chain.last_mac(conn, last.seq)
        audit_chain.check_writer_key(self.audit_key, keyed_by)
        return audit_chain.export_head(last.seq, last.hash, mac, self.audit_key, self._now())

    # -- internals ---------------------------------------------------------------------------------------------
    @staticmethod
    def _is_deleted() -> ColumnElement[bool]:
        return _V.c.id.in_(select(schema.deletions.c.version_id))

    @staticmethod
    def _version_ref(name: str, version: int | str) -> Ref:
        if isinstance(version, int):
            if version < 1:
                raise InvalidArgument(f"invalid version {version}: versions start at 1")
            return Ref(name, version=version)
        text = str(version).strip()
        if text.isdigit():
            return Ref(name, version=int(text))
        ref = parse_ref(text if (":" in text or "@" in text) else f"{name}:{text}")
        if ref.name != name:
            raise InvalidArgument(f"an alias of {name} must point at a version of {name}, not {ref}")
        return ref

    def _model_id(self, conn: Connection, name: str) -> int:
        model_id = conn.execute(select(_M.c.id).where(_M.c.name == name)).scalar()
        if model_id is None:
            known = conn.execute(select(_M.c.name).order_by(_M.c.name).limit(10)).scalars().all()
            hint = f" (models: {', '.join(known)})" if known else " (the registry is empty)"
            raise NotFound(f"no model named {name!r} in the registry at {self.url}{hint}")
        return int(model_id)

    def _alias_hint(self, conn: Connection, model_id: int) -> str:
        names = self._alias_names(conn, schema.aliases.c.model_id == model_id)
        return f" (aliases: {', '.join(names)})" if names else " (it has no aliases)"

    @staticmethod
    def _alias_names(conn: Connection, which: ColumnElement[bool]) -> list[str]:
        """The aliases ``which`` selects (of one version, or of one model), sorted."""
        a = schema.aliases
        return list(conn.execute(select(a.c.alias).where(which).order_by(a.c.alias)).scalars().all())

    def _resolve_id(self, conn: Connection, ref: Ref) -> int:
        model_id = self._model_id(conn, ref.name)
        deleted = self._is_deleted()
        if ref.alias is not None:
            vid = conn.execute(
                select(schema.aliases.c.version_id).where(
                    schema.aliases.c.model_id == model_id, schema.aliases.c.alias == ref.alias
                )
            ).scalar()
            if vid is None:
                raise NotFound(f"{ref.name} has no alias {ref.alias!r}{self._alias_hint(conn, model_id)}")
            return int(vid)
        if ref.version is None:
            vid = conn.execute(
                select(_V.c.id).where(_V.c.model_id == model_id, ~deleted).order_by(_V.c.version.desc()).limit(1)
            ).scalar()
            if vid is None:
                raise NotFound(f"{ref.name} has no versions left (all were deleted)")
            return int(vid)
        row = conn.execute(select(_V.c.id).where(_V.c.model_id == model_id, _V.c.version == ref.version)).first()
        if row is None:
            latest = conn.execute(select(_M.c.latest_version).where(_M.c.id == model_id)).scalar()
            raise NotFound(f"{ref.name} has no version {ref.version} (its versions go up to {latest})")
        gone = conn.execute(select(schema.deletions).where(schema.deletions.c.version_id == row.id)).first()
        if gone is not None:
            raise NotFound(f"{ref} was deleted at {_aware(gone.deleted_at).isoformat()} by {gone.deleted_by}")
        return int(row.id)

    @staticmethod
    def _insert_labels(conn: Connection, version_id: int, kind: str, values: Sequence[str]) -> None:
        if values:
            conn.execute(insert(schema.labels), [{"version_id": version_id, "kind": kind, "value": v} for v in values])

    def _labelled(
        self, conn: Connection, version_id: int, tags: Sequence[str], residency: Sequence[str]
    ) -> ModelVersion:
        """Write a version's tags and residency labels (none there yet) and read the version back."""
        self._insert_labels(conn, version_id, _TAG, tags)
        self._insert_labels(conn, version_id, _RESIDENCY, residency)
        return self._load(conn, _V.c.id == version_id)[0]

    @staticmethod
    def _end_span(conn: Connection, model_id: int, alias: str, now: datetime, actor: str) -> None:
        h = schema.alias_history
        conn.execute(
            update(h)
            .where(h.c.model_id == model_id, h.c.alias == alias, h.c.end_at.is_(None))
            .values(end_at=now, ended_by=actor)
        )

    @staticmethod
    def _load(conn: Connection, condition: ColumnElement[bool]) -> list[ModelVersion]:
        """Versions matching ``condition``, with their name, parent, labels, aliases and deletion state."""
        parent = _V.alias("parent")
        parent_model = _M.alias("parent_model")
        d = schema.deletions
        rows = conn.execute(
            select(
                _V,
                _M.c.name,
                parent.c.version.label("parent_version"),
                parent_model.c.name.label("parent_name"),
                d.c.deleted_at,
            )
            .select_from(
                _V.join(_M, _M.c.id == _V.c.model_id)
                .outerjoin(parent, parent.c.id == _V.c.parent_id)
                .outerjoin(parent_model, parent_model.c.id == parent.c.model_id)
                .outerjoin(d, d.c.version_id == _V.c.id)
            )
            .where(condition)
            .order_by(_M.c.name, _V.c.version)
        ).all()
        ids = [r.id for r in rows]
        labels: dict[tuple[int, str], list[str]] = {}
        alias_names: dict[int, list[str]] = {}
        if ids:
            for lab in conn.execute(
                select(schema.labels).where(schema.labels.c.version_id.in_(ids)).order_by(schema.labels.c.value)
            ):
                labels.setdefault((lab.version_id, lab.kind), []).append(lab.value)
            for al in conn.execute(
                select(schema.aliases.c.version_id, schema.aliases.c.alias)
                .where(schema.aliases.c.version_id.in_(ids))
                .order_by(schema.aliases.c.alias)
            ):
                alias_names.setdefault(al.version_id, []).append(al.alias)
        return [
            ModelVersion(
                name=r.name,
                version=r.version,
                sha256=r.sha256,
                size=int(r.size),
                format=r.format,
                created_at=_aware(r.created_at),
                created_by=r.created_by,
                parent=None if r.parent_name is None else f"{r.parent_name}:{r.parent_version}",
                recipe=None if r.recipe is None else json.loads(r.recipe),
                profile=None if r.profile is None else json.loads(r.profile),
                tags=tuple(labels.get((r.id, _TAG), [])),
                residency=tuple(labels.get((r.id, _RESIDENCY), [])),
                aliases=tuple(alias_names.get(r.id, [])),
                deleted=r.deleted_at is not None,
            )
            for r in rows
        ]
