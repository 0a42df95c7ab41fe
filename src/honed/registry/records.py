"""The values the registry hands out: model versions, model summaries, alias spans, lineage. Frozen, plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "sha256": self.sha256,
            "size": self.size,
            "format": self.format,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "parent": self.parent,
            "recipe": self.recipe,
            "profile": self.profile,
            "tags": list(self.tags),
            "residency": list(self.residency),
            "aliases": list(self.aliases),
            "deleted": self.deleted,
        }


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest_version: int
    live_versions: int
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latest_version": self.latest_version,
            "live_versions": self.live_versions,
            "aliases": dict(self.aliases),
        }


@dataclass(frozen=True)
class AliasSpan:
    """Version ``version`` served under ``alias`` from ``start`` until ``end`` (None: still serving)."""

    name: str
    alias: str
    version: int
    start: datetime
    started_by: str
    end: datetime | None = None
    ended_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "start": self.start.isoformat(),
            "started_by": self.started_by,
            "end": None if self.end is None else self.end.isoformat(),
            "ended_by": self.ended_by,
        }


@dataclass(frozen=True)
class Lineage:
    """A version with its ancestors (parent first, then the parent's parent ...) and all its descendants."""

    version: ModelVersion
    ancestors: list[ModelVersion]
    descendants: list[ModelVersion]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version.to_dict(),
            "ancestors": [v.to_dict() for v in self.ancestors],
            "descendants": [v.to_dict() for v in self.descendants],
        }
