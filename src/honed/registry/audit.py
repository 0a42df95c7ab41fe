"""The audit log's hash chain: how an entry is hashed, how one is appended, and how a chain is verified.

Each entry's ``hash`` is the sha256 of its canonical JSON (time, actor, action, target, details and the previous
entry's hash). The chain binds every entry to all before it; the ``audit_head`` row records the last sequence
number and hash, so removing entries from the end is found too. :func:`verify_chain` is pure: it takes the rows
and the head and names every entry that was edited, removed or reordered.

A chain proves the log was not changed *by someone who cannot also rewrite every later hash and the head*.
Anchor the head hash outside the database (``honed audit verify --json`` prints it; ``--expect-head`` checks it)
to cover an attacker with full write access to the database.
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
from honed.registry import schema

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class AuditProblem:
    seq: int
    kind: str  # "edited" | "removed" | "reordered" | "head"
    message: str


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_seq: int
    head_hash: str
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problems": [{"seq": p.seq, "kind": p.kind, "message": p.message} for p in self.problems],
        }


def entry_hash(at: str, actor: str, action: str, target: str, details: str, prev_hash: str) -> str:
    """The hash of one entry; ``details`` is the stored canonical JSON text, hashed as stored."""
    body = canonical_json(
        {"at": at, "actor": actor, "action": action, "target": target, "details": details, "prev": prev_hash}
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


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


def append(
    conn: Connection, *, at: datetime, actor: str, action: str, target: str, details: Mapping[str, Any] | None
) -> AuditEntry:
    """Append one entry inside the caller's write transaction (which holds the registry's write lock)."""
    actor = check_actor(actor)
    action = check_action(action)
    head = conn.execute(select(schema.audit_head.c.seq, schema.audit_head.c.hash).where(schema.audit_head.c.id == 1))
    seq, prev = head.one()
    stamp = format_time(at)
    details_text = canonical_json(dict(details or {}))
    digest = entry_hash(stamp, actor, action, target, details_text, prev)
    conn.execute(
        insert(schema.audit_log).values(
            seq=seq + 1,
            at=stamp,
            actor=actor,
            action=action,
            target=target,
            details=details_text,
            prev_hash=prev,
            hash=digest,
        )
    )
    conn.execute(update(schema.audit_head).where(schema.audit_head.c.id == 1).values(seq=seq + 1, hash=digest))
    return AuditEntry(seq + 1, stamp, actor, action, target, json.loads(details_text), prev, digest)


def row_to_entry(row: Any) -> AuditEntry:
    try:
        details = json.loads(row.details)
    except (TypeError, ValueError):
        details = {"unparseable": str(row.details)}
    return AuditEntry(row.seq, row.at, row.actor, row.action, row.target, details, row.prev_hash, row.hash)


def verify_chain(rows: Iterable[Any], head_seq: int, head_hash: str) -> AuditReport:
    """Check every entry against its hash and its predecessor, and the last one against the head."""
    ordered = sorted(rows, key=lambda r: r.seq)
    seq_of_hash = {r.hash: r.seq for r in ordered}
    problems: list[AuditProblem] = []
    expected_seq, prev_hash, prev_seq = 1, schema.GENESIS_HASH, 0
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
        expected_seq, prev_hash, prev_seq = row.seq + 1, row.hash, row.seq
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
    return AuditReport(entries=len(ordered), head_seq=head_seq, head_hash=head_hash, problems=problems)
