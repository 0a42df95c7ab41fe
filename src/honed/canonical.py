"""Canonical JSON, the one text honed hashes and stores structured values as: sorted keys, no spaces, UTF-8.

Cache keys, candidate ids, the registry's JSON columns and the audit log's hash chain all use it, so a value has
one text and one digest everywhere. The audit chain hashes this exact text: changing the encoding would make
every existing chain fail verification.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(data: Any, *, strict: bool = False) -> str:
    """``data`` as canonical JSON; ``strict`` refuses NaN/infinity and non-JSON values (TypeError/ValueError)
    instead of writing them as ``NaN`` or their ``str()``."""
    if strict:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(data: Any) -> str:
    """sha256 (hex) of ``data``'s canonical JSON."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()
