"""Per-request data residency for the server: the one check both REST and gRPC go through.

A request declares where its data must stay with the header ``X-Data-Residency`` (REST) or the metadata key
``x-data-residency`` (gRPC), once; a comma-separated list means any of those. A request that carries the header
twice or more is refused with :class:`RepeatedResidency` (400 / INVALID_ARGUMENT) whatever the values say: a proxy
that appends a header must not widen (or narrow) what the client declared. :class:`ResidencyGuard` decides, with
:func:`honed.registry.residency.check_request`, whether this server may process it, and fails closed:

* a server started with ``--jurisdiction X``: a request is served only when it declares X (or a list holding X);
  a request that declares nothing is refused unless the operator passed ``--allow-unlabelled``;
* a server without ``--jurisdiction`` is approved for no jurisdiction: a request that declares a residency is
  refused (its data may not be processed on unapproved infrastructure); a request that declares nothing is served.

Every refusal raises :class:`honed.errors.ResidencyViolation` (403 / PERMISSION_DENIED), is counted in
``honed_residency_refusals_total{model,reason}`` and, when the server serves from a registry, audited as
``refuse_request``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from honed.errors import HonedError, InvalidArgument, ResidencyViolation
from honed.registry.refs import normalize_jurisdiction
from honed.registry.residency import check_request, parse_declared
from honed.serve.metrics import ServeMetrics

log = logging.getLogger("honed.serve")

HEADER = "x-data-residency"
"""The request header (REST, case-insensitive) and gRPC metadata key that declares a request's data residency."""


class RepeatedResidency(InvalidArgument):
    """A request that declares its data residency more than once."""


def declared_residency(declared: str | Sequence[str] | None) -> str | None:
    """The one residency declaration of a request, given every value of its residency header in order (or the
    value itself); :class:`RepeatedResidency` when there is more than one."""
    if declared is None or isinstance(declared, str):
        return declared
    if len(declared) > 1:
        raise RepeatedResidency(
            f"the request declares its data residency {len(declared)} times; send one {HEADER} header "
            "(a comma-separated list in it means any of those jurisdictions)"
        )
    return declared[0] if declared else None


class AuditSink(Protocol):
    """Where refusals are written (a :class:`honed.registry.Registry` is one)."""

    def audit(self, actor: str, action: str, target: str, details: Any = None) -> Any: ...


def normalize_jurisdictions(codes: Iterable[str]) -> tuple[str, ...]:
    """``["AE", "sa,QA"]`` -> ``("AE", "SA", "QA")``: repeatable flags and comma lists alike, duplicates dropped."""
    parts = [p.strip() for code in codes for p in code.split(",")]
    return tuple(dict.fromkeys(normalize_jurisdiction(p) for p in parts if p))


class ResidencyGuard:
    """Decides, counts and audits the residency of every infer request of one server."""

    def __init__(
        self,
        jurisdictions: Iterable[str] = (),
        *,
        allow_unlabelled: bool = False,
        metrics: ServeMetrics | None = None,
        audit: AuditSink | None = None,
        actor: str = "honed-serve",
    ) -> None:
        self.jurisdictions = normalize_jurisdictions(jurisdictions)
        self.allow_unlabelled = allow_unlabelled
        self.metrics = metrics
        self.audit = audit
        self.actor = actor

    async def check(self, model: str, version: str, declared: str | Sequence[str] | None) -> str | None:
        """Allow the request or raise ResidencyViolation / RepeatedResidency (counted and audited); returns the
        matched jurisdiction. ``declared`` is the header's value, or every value the request carried."""
        try:
            declared = declared_residency(declared)
        except RepeatedResidency as exc:
            await self.refused(model, version, ",".join(declared or ()), "invalid", str(exc))
            raise
        undeclared = declared is None or not declared.strip()
        if undeclared and not self.jurisdictions:
            return None  # a server that governs nothing serves undeclared data
        try:
            return check_request(declared, self.jurisdictions, allow_unlabelled=self.allow_unlabelled)
        except ResidencyViolation as exc:
            await self.refused(model, version, declared, _reason(declared), str(exc))
            raise

    async def refused(self, model: str, version: str, declared: str | None, reason: str, message: str) -> None:
        if self.metrics is not None:
            self.metrics.residency_refused(model, reason)
        if self.audit is None:
            return
        details = {
            "reason": reason,
            "declared": declared,
            "jurisdictions": list(self.jurisdictions),
            "message": message,
        }
        try:
            await asyncio.to_thread(self.audit.audit, self.actor, "refuse_request", f"{model}:{version}", details)
        except HonedError as exc:  # the refusal stands even when the audit log cannot be written
            log.error("could not audit the refused request to %s:%s: %s", model, version, exc)


def _reason(declared: str | None) -> str:
    if declared is None or not declared.strip():
        return "undeclared"
    try:
        parse_declared(declared)
    except ResidencyViolation:
        return "invalid"
    return "not_approved"


__all__ = ["HEADER", "RepeatedResidency", "ResidencyGuard", "declared_residency", "normalize_jurisdictions"]
