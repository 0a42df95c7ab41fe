"""Models served from the registry: ``honed serve --registry URL --model fraud-scorer@production``.

:class:`RegistryCatalog` is the repository's :class:`~honed.serve.repository.Catalog` over a
:class:`honed.registry.Registry`. For each model name it resolves the refs given for it (``name``, ``name:3``,
``name@alias``; an alias is resolved again on every load, so ``POST /v2/repository/models/NAME/load`` picks up an
alias that moved), then per version:

1. **placement** (fails closed): the version's residency must allow every jurisdiction this server is approved for
   (:func:`honed.registry.residency.check_placement`); an unlabelled version is refused on a server with
   ``--jurisdiction`` unless the operator passed ``--allow-unlabelled``, and a labelled version is refused on a
   server that declares no jurisdiction. A refusal is audited (``refuse_load``), counted
   (``honed_residency_refusals_total{reason="placement"}``) and reported; the other models still serve.
2. **integrity**: :meth:`honed.registry.Registry.artifact_path` re-checks the artifact's sha256 right before the
   load and refuses (and audits) a mismatch.

The version is served under the model name with the registry's version number as its V2 version. Loads and
unloads (including reloads and shutdown) are audited as ``load`` / ``unload``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from honed.errors import HonedError, InvalidArgument, NotFound, ResidencyViolation
from honed.registry import ModelVersion, Registry, parse_ref
from honed.registry.optimized import PRODUCTION
from honed.registry.residency import check_placement
from honed.serve.metrics import ServeMetrics
from honed.serve.repository import ModelSource
from honed.serve.security import normalize_jurisdictions

log = logging.getLogger("honed.serve")


class RegistryCatalog:
    """The models a server takes from a registry, by name, with placement, integrity and audit."""

    def __init__(
        self,
        registry: Registry,
        refs: Iterable[str],
        *,
        jurisdictions: Iterable[str] = (),
        allow_unlabelled: bool = False,
        actor: str = "honed-serve",
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.jurisdictions = normalize_jurisdictions(jurisdictions)
        self.allow_unlabelled = allow_unlabelled
        self.actor = actor
        self.metrics = metrics
        self.refs: dict[str, list[str]] = {}
        self.extra: dict[str, list[str]] = {}
        """Refs served beside ``refs`` for now: a rollout's candidate (:mod:`honed.serve.rollout` sets them)."""
        for ref in refs:
            parsed = parse_ref(ref)
            wanted = self.refs.setdefault(parsed.name, [])
            if ref.strip() not in wanted:
                wanted.append(ref.strip())

    def names(self) -> list[str]:
        return sorted(self.refs)

    def discover(self) -> tuple[list[ModelSource], list[tuple[str, str]]]:
        sources: list[ModelSource] = []
        bad: list[tuple[str, str]] = []
        for name in self.names():
            try:
                sources.append(self.source(name))
            except HonedError as exc:
                bad.append((name, str(exc)))
        return sources, bad

    def source(self, name: str) -> ModelSource:
        """Resolve, place and verify the versions of ``name``; raise the first refusal when none may serve."""
        refs = self.refs.get(name)
        if refs is None:
            raise NotFound(f"unknown model {name!r}; this server serves from the registry: {', '.join(self.names())}")
        refs = [*refs, *self.extra.get(name, ())]
        versions: dict[str, Any] = {}
        origin: dict[str, Any] = {}
        errors: list[HonedError] = []
        for ref in refs:
            try:
                version = self.registry.resolve(ref)
                key = str(version.version)
                if key in versions:
                    continue
                self._place(version, ref)
                versions[key] = self.registry.artifact_path(version, actor=self.actor)
                origin[key] = (version, ref)
            except HonedError as exc:
                log.error("not serving %s: %s", ref, exc)
                errors.append(exc)
        if not versions:
            raise errors[0]
        first = next(iter(versions.values()))
        return ModelSource(name, first.parent, versions, None, origin)

    def _place(self, version: ModelVersion, ref: str) -> None:
        try:
            if not self.jurisdictions:
                if version.residency:
                    raise ResidencyViolation(
                        f"{version.ref} may run only in {', '.join(version.residency)}, and this server is approved "
                        "for no jurisdiction; start it with --jurisdiction "
                        f"{version.residency[0]} on infrastructure approved for it"
                    )
                return
            for where in self.jurisdictions:
                check_placement(version, where, allow_unlabelled=self.allow_unlabelled)
        except ResidencyViolation as exc:
            if self.metrics is not None:
                self.metrics.residency_refused(version.name, "placement")
            self.registry.audit(
                self.actor,
                "refuse_load",
                version.ref,
                {
                    "requested": ref,
                    "residency": list(version.residency),
                    "jurisdictions": list(self.jurisdictions),
                    "message": str(exc),
                },
            )
            raise

    def loaded(self, source: ModelSource, versions: Sequence[str]) -> None:
        for key in versions:
            version, ref = source.origin[key]
            self.registry.audit(
                self.actor,
                "load",
                version.ref,
                {
                    "model": source.name,
                    "requested": ref,
                    "sha256": version.sha256,
                    "jurisdictions": list(self.jurisdictions),
                },
            )

    def unloaded(self, source: ModelSource, versions: Sequence[str], reason: str) -> None:
        for key in versions:
            version, ref = source.origin[key]
            self.registry.audit(
                self.actor, "unload", version.ref, {"model": source.name, "requested": ref, "reason": reason}
            )


__all__ = ["RegistryCatalog"]


PRODUCTION_ALIAS = PRODUCTION


def production_refs(registry: Registry) -> list[str]:
    """``NAME@production`` for every model that has a production alias: what a registry server serves by default."""
    refs = [f"{m.name}@{PRODUCTION_ALIAS}" for m in registry.models() if PRODUCTION_ALIAS in m.aliases]
    if not refs:
        raise InvalidArgument(
            f"no model in the registry has a '{PRODUCTION_ALIAS}' alias: point one at a version with "
            f"`honed registry alias NAME {PRODUCTION_ALIAS} VERSION`, or pick models with --model NAME[:V|@ALIAS]"
        )
    return refs
