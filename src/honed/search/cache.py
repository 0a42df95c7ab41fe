"""The on-disk cache of evaluated candidates and built models, so an interrupted search resumes and a rerun is instant.

An entry is keyed by the hash of everything its result depends on: the source model's sha256, the
candidate (passes, parameters, runtime config), the data hashes, the batch size, the library versions and the
hardware. Entries are JSON files written atomically (write then rename), so a run killed mid-write leaves
no half entry. Built models are stored by the hash of (source, pipeline, calibration data, versions).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from honed.jsonio import write_json
from honed.model.artifact import artifact_exists, copy_artifact


def default_cache_dir() -> Path:
    """``$HONED_CACHE_DIR``, else ``$XDG_CACHE_HOME/honed/optimize``, else ``~/.cache/honed/optimize``."""
    if os.environ.get("HONED_CACHE_DIR"):
        return Path(os.environ["HONED_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "honed" / "optimize"


class CandidateCache:
    """JSON results and ONNX models under one folder; ``enabled=False`` turns reads and writes off."""

    def __init__(self, folder: Path, *, enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled
        if enabled:
            (folder / "results").mkdir(parents=True, exist_ok=True)
            (folder / "models").mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        path = self.folder / "results" / f"{key}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not self.enabled:
            return
        write_json(self.folder / "results" / f"{key}.json", value, indent=1, sort_keys=True)

    def model_path(self, key: str) -> Path | None:
        """The cached model for ``key`` (an ONNX file, or IR with its ``.bin``), or None."""
        if not self.enabled:
            return None
        for suffix in (".onnx", ".xml"):
            path = self.folder / "models" / f"{key}{suffix}"
            if artifact_exists(path):
                return path
        return None

    def put_model(self, key: str, source: Path) -> Path:
        """Copy the model at ``source`` (every file of it) into the cache under ``key``; returns the cached path
        (``source`` when disabled)."""
        if not self.enabled:
            return source
        return copy_artifact(source, self.folder / "models" / f"{key}{source.suffix}")
