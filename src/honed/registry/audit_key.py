"""The audit log's key: a secret kept outside the database that MACs every entry and signs exported heads.

The key file holds 32 random bytes as 64 hex digits. It is made with mode 0600 (``honed audit key``) and found
through ``--audit-key-file`` or ``$HONED_AUDIT_KEY_FILE``; a file others can read or write is refused. A key is
named by its id (the first 16 hex digits of a sha256 over it), which each keyed entry records, so the wrong key
file is told apart from a tampered log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from honed.errors import InvalidArgument

ENV = "HONED_AUDIT_KEY_FILE"
_KEY_BYTES = 32


@dataclass(frozen=True)
class AuditKey:
    secret: bytes = field(repr=False)
    path: str = ""

    @property
    def id(self) -> str:
        return hashlib.sha256(b"honed-audit-key:" + self.secret).hexdigest()[:16]

    def mac(self, text: str) -> str:
        """HMAC-SHA256 (hex) of ``text``'s UTF-8 bytes."""
        return hmac.new(self.secret, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def matches(self, text: str, mac: str | None) -> bool:
        return mac is not None and hmac.compare_digest(self.mac(text), mac)


def create_key(path: str | Path) -> tuple[AuditKey, bool]:
    """The key at ``path``, made (mode 0600, never overwriting) when missing; the flag says whether it was made."""
    target = Path(path).expanduser()
    if target.exists():
        return load_key(target), False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by another process since the check above
        return load_key(target), False
    except OSError as exc:
        raise InvalidArgument(f"cannot create the audit key file {target}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(_KEY_BYTES) + "\n")
    return load_key(target), True


def load_key(path: str | Path) -> AuditKey:
    """Read a key file; a missing, unreadable, malformed or world-accessible file is an InvalidArgument."""
    source = Path(path).expanduser()
    try:
        mode = source.stat().st_mode
        text = source.read_text().strip()
    except FileNotFoundError as exc:
        raise InvalidArgument(
            f"audit key file {source} does not exist: make one with `honed audit key --out {source}`"
        ) from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot read the audit key file {source}: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise InvalidArgument(
            f"audit key file {source} has mode {stat.S_IMODE(mode):04o}, so others can read or change it: "
            f"run `chmod 600 {source}`"
        )
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < _KEY_BYTES:
        raise InvalidArgument(
            f"audit key file {source} is not an audit key (it must hold at least {2 * _KEY_BYTES} hex digits); "
            "make one with `honed audit key`"
        )
    return AuditKey(secret, str(source))


def find_key(path: str | Path | None) -> AuditKey | None:
    """The key named by ``path``, else by ``$HONED_AUDIT_KEY_FILE``; None when neither is set."""
    chosen = path or os.environ.get(ENV) or None
    return None if chosen is None else load_key(chosen)
