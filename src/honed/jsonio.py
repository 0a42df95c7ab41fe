"""JSON files: the one way honed writes a JSON document another run or process may read, and the one way it
reads one back (a missing, truncated or wrong-shaped file is an InvalidArgument naming it).

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

from honed.errors import InvalidArgument


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


def read_json(path: str | Path, what: str = "file", *, hint: str | None = None) -> Any:
    """A JSON file's content; a missing or malformed file is an InvalidArgument naming it (and ``hint``: what
    writes one)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"{what} not found: {p}" + (f" ({hint})" if hint else ""))
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{p} is not valid JSON (truncated?): {exc}") from exc


def read_object(path: str | Path, what: str = "file") -> dict[str, Any]:
    """A JSON file that holds one object (a recipe, a profile), as a dict."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise InvalidArgument(f"the {what} file {path} must hold a JSON object")
    return data


__all__ = ["read_json", "read_object", "write_json"]
