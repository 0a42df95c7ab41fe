"""The values the registry hands out: model versions, model summaries, alias spans, lineage. Frozen, plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from honed.fields import Document, as_dict


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a model. ``tags`` and ``residency`` are labels (changed via ``label``, audited)."""

    name: str
    version: int
    sha256: str
    size: int
    format: str
    created_at: datetime
    created_by: str
    parent: str | None = None
    recipe: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    residency: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    deleted: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "ref": self.ref} | as_dict(self)


@dataclass(frozen=True)
class ModelSummary(Document):
    name: str
    latest_version: int
    live_versions: int
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AliasSpan(Document):
    """Version ``version`` served under ``alias`` from ``start`` until ``end`` (None: still serving)."""

    name: str
    alias: str
    version: int
    start: datetime
    started_by: str
    end: datetime | None = None
    ended_by: str | None = None


@dataclass(frozen=True)
class Lineage(Document):
    """A version with its ancestors (parent first, then the parent's parent ...) and all its descendants."""

    version: ModelVersion
    ancestors: list[ModelVersion]
    descendants: list[ModelVersion]
