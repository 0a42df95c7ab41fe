"""The audit log's chain: how an entry is hashed and MACed, how one is appended, how a head is exported and
signed, and how a chain is verified.

Each entry's ``hash`` is the sha256 of its canonical JSON (time, actor, action, target, details and the previous
entry's hash). The chain binds every entry to all before it; the ``audit_head`` row records the last sequence
number and hash, so removing entries from the end is found too. :func:`verify_chain` is pure: it takes the rows
and the head and names every entry that was edited, removed or reordered.

A hash chain alone proves nothing against someone who can write the database: they can re-hash everything and
rewrite the head. So, with an audit key (:mod:`honed.registry.audit_key`, kept outside the database), each entry
also gets a ``mac``: HMAC-SHA256 over its canonical JSON (sequence number, fields, previous hash) and the previous
entry's MAC, plus the key's id. Nobody without the key can edit, re-hash or insert an entry unseen. Deleting the
*last* entries (and rewriting the head to match) leaves a valid shorter chain, so :func:`export_head` writes a
head signed with the key to a file kept elsewhere; verifying against it finds the lost tail.

Entries written before a key was given carry no MAC and are checked by their hash, as before; once one entry is
keyed, every later one must be (a writer without the key is refused, and an unkeyed entry after a keyed one fails
verification).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from honed.canonical import canonical_json
from honed.errors import InvalidArgument
from honed.fields import Document, as_dict
from honed.registry import schema
from honed.registry.audit_key import AuditKey

HEAD_FORMAT = "honed-audit-head/1"

_ACTION = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    mac: str | None = None
    key_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class AuditProblem(Document):
    seq: int
    kind: str  # "edited" | "removed" | "reordered" | "head" | "anchor" | "unkeyed" | "key"
    message: str


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_seq: int
    head_hash: str
    problems: list[AuditProblem] = field(default_factory=list)
    keyed_entries: int = 0
    """Entries that carry a MAC."""
    macs_checked: bool = False
    """Whether those MACs were checked (a key was given)."""
    exported_head: int | None = None
    """The sequence number of the exported head the log was checked against, if one was."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> AuditProblem | None:
        return min(self.problems, key=lambda p: p.seq) if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_problem
        return {"ok": self.ok} | as_dict(self) | {"first_bad_seq": None if first is None else first.seq}


@dataclass(frozen=True)
class AuditHead:
    """The log's last entry as exported to a file, signed with the audit key (HMAC over the other fields)."""

    seq: int
    hash: str
    mac: str | None
    key_id: str
    exported_at: str
    signature: str

    def _signed_text(self) -> str:
        return canonical_json({k: v for k, v in self.to_dict().items() if k != "signature"})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "mac": self.mac,
            "key_id": self.key_id,
            "exported_at": self.exported_at,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "the head file") -> AuditHead:
        if not isinstance(data, dict) or data.get("format") != HEAD_FORMAT:
            raise InvalidArgument(f"{source} is not an exported audit head (format {HEAD_FORMAT!r})")
        try:
            head = cls(
                seq=data["seq"],
                hash=data["hash"],
                mac=data["mac"],
                key_id=data["key_id"],
                exported_at=data["exported_at"],
                signature=data["signature"],
            )
        except KeyError as exc:
            raise InvalidArgument(f"{source} lacks the field {exc.args[0]!r}: export it again") from exc
        if (
            not isinstance(head.seq, int)
            or head.seq < 0
            or not all(isinstance(v, str) for v in (head.hash, head.key_id, head.exported_at, head.signature))
        ):
            raise InvalidArgument(f"{source} has fields of the wrong type: export it again")
        return head

    def check(self, key: AuditKey, source: str = "the head file") -> None:
        """Refuse a head exported with another key, or one whose fields were changed since it was signed."""
        if self.key_id != key.id:
            raise InvalidArgument(
                f"{source} was signed with audit key {self.key_id}, but {key.path or 'the key given'} is key "
                f"{key.id}: give the key file the head was exported with"
            )
        if not key.matches(self._signed_text(), self.signature):
            raise InvalidArgument(f"{source} does not match its signature: it was edited after it was exported")


def export_head(seq: int, hash_: str, mac: str | None, key: AuditKey, at: datetime) -> AuditHead:
    unsigned = AuditHead(seq, hash_, mac, key.id, format_time(at), "")
    return AuditHead(seq, hash_, mac, key.id, unsigned.exported_at, key.mac(unsigned._signed_text()))


def entry_hash(at: str, actor: str, action: str, target: str, details: str, prev_hash: str) -> str:
    """The hash of one entry; ``details`` is the stored canonical JSON text, hashed as stored."""
    body = canonical_json(
        {"at": at, "actor": actor, "action": action, "target": target, "details": details, "prev": prev_hash}
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def mac_text(row: Any, prev_mac: str | None, key_id: str) -> str:
    """What an entry's MAC covers: its sequence number, its stored fields as hashed, the previous entry's MAC
    (empty when that one has none) and the key's id."""
    return canonical_json(
        {
            "seq": row.seq,
            "at": row.at,
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "details": row.details,
            "prev_hash": row.prev_hash,
            "hash": row.hash,
            "prev_mac": prev_mac or "",
            "key_id": key_id,
        }
    )


def format_time(when: datetime) -> str:
    return when.isoformat(timespec="microseconds")


def check_action(action: str) -> str:
    if not isinstance(action, str) or not _ACTION.match(action):
        raise InvalidArgument(f"invalid audit action {action!r}: use lower-case letters, digits, '_', '.' or '-'")
    return action


def check_actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 200:
        raise InvalidArgument("every change needs an actor (who did it): give a non-empty name up to 200 characters")
    return actor.strip()


def last_mac(conn: Connection, seq: int) -> tuple[str | None, str | None]:
    """The (mac, key_id) of entry ``seq``; (None, None) for the genesis or an unkeyed entry."""
    if seq == 0:
        return None, None
    log = schema.audit_log
    row = conn.execute(select(log.c.mac, log.c.key_id).where(log.c.seq == seq)).first()
    return (None, None) if row is None else (row.mac, row.key_id)


def check_writer_key(key: AuditKey | None, keyed_by: str | None) -> None:
    """Refuse to extend a keyed log without its key (the entry would break the MAC chain)."""
    if keyed_by is None or (key is not None and key.id == keyed_by):
        return
    if key is None:
        raise InvalidArgument(
            f"the audit log is keyed (audit key {keyed_by}): give its key file with --audit-key-file "
            f"or HONED_AUDIT_KEY_FILE to change the registry"
        )
    raise InvalidArgument(
        f"the audit log is keyed with audit key {keyed_by}, but {key.path or 'the key given'} is key {key.id}: "
        "give the key file the log was written with"
    )


def append(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None,
    key: AuditKey | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's write transaction (which holds the registry's write lock); with
    ``key``, the entry is MACed, and a keyed log refuses a writer without its key."""
    actor = check_actor(actor)
    action = check_action(action)
    head = conn.execute(select(schema.audit_head.c.seq, schema.audit_head.c.hash).where(schema.audit_head.c.id == 1))
    seq, prev = head.one()
    prev_mac, keyed_by = last_mac(conn, seq)
    check_writer_key(key, keyed_by)
    stamp = format_time(at)
    details_text = canonical_json(dict(details or {}))
    digest = entry_hash(stamp, actor, action, target, details_text, prev)
    values: dict[str, Any] = {
        "seq": seq + 1,
        "at": stamp,
        "actor": actor,
        "action": action,
        "target": target,
        "details": details_text,
        "prev_hash": prev,
        "hash": digest,
    }
    mac = None
    if key is not None:
        mac = key.mac(mac_text(_Fields(values), prev_mac, key.id))
        values.update(mac=mac, key_id=key.id)
    conn.execute(insert(schema.audit_log).values(**values))
    conn.execute(update(schema.audit_head).where(schema.audit_head.c.id == 1).values(seq=seq + 1, hash=digest))
    return AuditEntry(
        seq + 1,
        stamp,
        actor,
        action,
        target,
        json.loads(details_text),
        prev,
        digest,
        mac,
        None if key is None else key.id,
    )


class _Fields:
    """Attribute access to a dict of column values, so :func:`mac_text` reads a new entry as it reads a row."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)


def row_to_entry(row: Any) -> AuditEntry:
    try:
        details = json.loads(row.details)
    except (TypeError, ValueError):
        details = {"unparseable": str(row.details)}
    return AuditEntry(
        row.seq, row.at, row.actor, row.action, row.target, details, row.prev_hash, row.hash, row.mac, row.key_id
    )


def verify_chain(
    rows: Iterable[Any],
    head_seq: int,
    head_hash: str,
    *,
    key: AuditKey | None = None,
    exported: AuditHead | None = None,
) -> AuditReport:
    """Check every entry against its hash and its predecessor, and the last one against the head; with ``key``,
    every MAC too; with ``exported`` (a head exported earlier, checked against ``key``), that the log still holds
    it. A key that is not the log's, or a head file that fails its signature, raises InvalidArgument."""
    ordered = sorted(rows, key=lambda r: r.seq)
    seq_of_hash = {r.hash: r.seq for r in ordered}
    problems: list[AuditProblem] = []
    keyed = [r for r in ordered if r.mac is not None]
    if key is not None:
        _check_key(key, keyed)
    if exported is not None:
        if key is None:
            raise InvalidArgument("checking an exported head needs the audit key: give --audit-key-file")
        exported.check(key)
    expected_seq, prev_hash, prev_seq = 1, schema.GENESIS_HASH, 0
    prev_mac: str | None = None
    keyed_since: int | None = None
    for row in ordered:
        gap = row.seq != expected_seq
        if gap:
            missing = f"#{expected_seq}" if row.seq == expected_seq + 1 else f"#{expected_seq}..#{row.seq - 1}"
            problems.append(AuditProblem(expected_seq, "removed", f"entry {missing} is missing: removed from the log"))
        what = f"entry #{row.seq} ({row.action} {row.target} by {row.actor} at {row.at})"
        if entry_hash(row.at, row.actor, row.action, row.target, row.details, row.prev_hash) != row.hash:
            problems.append(AuditProblem(row.seq, "edited", f"{what} does not match its hash: it was edited"))
        if row.prev_hash != prev_hash and not gap:
            if row.prev_hash in seq_of_hash and seq_of_hash[row.prev_hash] != prev_seq:
                problems.append(
                    AuditProblem(
                        row.seq,
                        "reordered",
                        f"{what} was written after #{seq_of_hash[row.prev_hash]}, not #{prev_seq}: "
                        "entries were reordered",
                    )
                )
            else:
                problems.append(
                    AuditProblem(
                        row.seq,
                        "removed",
                        f"{what} does not follow #{prev_seq}: an entry between them was removed, "
                        f"or #{prev_seq} was rewritten with a new hash",
                    )
                )
        problem = _mac_problem(row, what, key, prev_mac, keyed_since)
        if problem is not None:
            problems.append(problem)
        if row.mac is not None and keyed_since is None:
            keyed_since = row.seq
        expected_seq, prev_hash, prev_seq, prev_mac = row.seq + 1, row.hash, row.seq, row.mac
    last_seq = ordered[-1].seq if ordered else 0
    if head_seq > last_seq:
        first = last_seq + 1
        missing = f"#{first}" if head_seq == first else f"#{first}..#{head_seq}"
        problems.append(
            AuditProblem(
                first, "removed", f"entry {missing} is missing: the log ends at #{last_seq} but had {head_seq}"
            )
        )
    elif head_seq < last_seq or head_hash != prev_hash:
        problems.append(
            AuditProblem(
                last_seq,
                "head",
                f"the last entry (#{last_seq}) does not match the recorded head (#{head_seq}): "
                "the end of the log was rewritten",
            )
        )
    if exported is not None:
        problems.extend(_exported_head_problems(ordered, exported))
    problems.sort(key=lambda p: p.seq)
    return AuditReport(
        entries=len(ordered),
        head_seq=head_seq,
        head_hash=head_hash,
        problems=problems,
        keyed_entries=len(keyed),
        macs_checked=key is not None,
        exported_head=None if exported is None else exported.seq,
    )


def _check_key(key: AuditKey, keyed: list[Any]) -> None:
    """A key none of the keyed entries names is the wrong key file, not tampering: say so."""
    ids = {r.key_id for r in keyed}
    if ids and key.id not in ids:
        raise InvalidArgument(
            f"{key.path or 'the audit key given'} is audit key {key.id}, but the log was written with "
            f"{', '.join(sorted(str(i) for i in ids))}: give the key file the log was written with"
        )


def _mac_problem(
    row: Any, what: str, key: AuditKey | None, prev_mac: str | None, keyed_since: int | None
) -> AuditProblem | None:
    if row.mac is None:
        if keyed_since is None:
            return None
        return AuditProblem(
            row.seq,
            "unkeyed",
            f"{what} has no MAC, though the log is keyed since #{keyed_since}: it was written or rewritten "
            "without the audit key",
        )
    if key is None:
        return None
    if row.key_id != key.id:
        return AuditProblem(
            row.seq, "key", f"{what} names audit key {row.key_id}, not the log's key {key.id}: it was forged"
        )
    if not key.matches(mac_text(row, prev_mac, key.id), row.mac):
        return AuditProblem(
            row.seq,
            "edited",
            f"{what} does not match its MAC: it, or the entry before it, was edited, re-hashed or moved",
        )
    return None


def _exported_head_problems(ordered: list[Any], exported: AuditHead) -> list[AuditProblem]:
    by_seq = {r.seq: r for r in ordered}
    last_seq = ordered[-1].seq if ordered else 0
    where = f"the head exported at {exported.exported_at}"
    if exported.seq > last_seq:
        first = last_seq + 1
        missing = f"#{first}" if exported.seq == first else f"#{first}..#{exported.seq}"
        return [
            AuditProblem(
                first,
                "removed",
                f"entry {missing} is missing: the log ends at #{last_seq}, but {where} says it reached "
                f"#{exported.seq}: its tail was deleted",
            )
        ]
    row = by_seq.get(exported.seq)
    if exported.seq > 0 and (row is None or row.hash != exported.hash or row.mac != exported.mac):
        return [
            AuditProblem(
                exported.seq, "anchor", f"entry #{exported.seq} is not the one {where} recorded: it was rewritten"
            )
        ]
    return []
