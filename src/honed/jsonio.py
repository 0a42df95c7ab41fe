"""Atomic JSON files: the one way honed writes a JSON document another run or process may read.

The text goes to a temporary file in the target's own folder (so the rename never crosses a file system) and is
then renamed over the target with :func:`os.replace`, so a reader sees the old file or the new one, never half
of one, even when the writer is killed mid-write.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(path: str | Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (creating its folder); values JSON cannot hold become strings."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


__all__ = ["write_json"]
