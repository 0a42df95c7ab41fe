"""The values the registry hands out: model versions, model summaries, alias spans, lineage. Frozen, plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from honed.fields import Document, as_dict


@dataclass(frozen=True)
class OptimizeGate:
    """The accuracy gate ``honed optimize --register`` judged a version by against its parent (the user's
    ``--metric`` and ``--min`` / ``--max``), kept in the version's profile under ``gate``."""

    metric: str
    min: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "min": self.min, "max": self.max}

    @classmethod
    def from_profile(cls, profile: dict[str, Any] | None) -> OptimizeGate | None:
        """The gate in a profile; None when there is none (a version not made by optimize, or registered before
        optimize recorded its gate) or it is not well formed."""
        gate = (profile or {}).get("gate")
        if not isinstance(gate, dict) or not isinstance(gate.get("metric"), str):
            return None
        bounds = [gate.get("min"), gate.get("max")]
        if not all(b is None or (isinstance(b, int | float) and not isinstance(b, bool)) for b in bounds):
            return None
        low, high = (None if b is None else float(b) for b in bounds)
        return cls(gate["metric"], low, high)


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

    @property
    def optimize_gate(self) -> OptimizeGate | None:
        """The gate optimize judged this version by against its ``parent`` (None if it recorded none)."""
        return OptimizeGate.from_profile(self.profile)

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
