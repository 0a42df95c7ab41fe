"""Data residency: where a model version may be placed and which requests a server may process. Fails closed.

* A version carries the jurisdictions it may run in (``honed registry label NAME:V --residency AE``).
  :func:`check_placement` refuses to place it on a server in any other jurisdiction, and refuses an unlabelled
  version unless the operator opted out explicitly (``allow_unlabelled=True``).
* A request may declare where its data must stay (e.g. the header ``X-Data-Residency: AE``; a comma-separated
  list means any of those). :func:`check_request` refuses it unless this server is approved for one of them,
  and refuses a request that declares nothing unless the operator opted out.

Both raise :class:`honed.errors.ResidencyViolation`; the caller audits and counts the refusal
(``Registry.audit(actor, "refuse_load" | "refuse_request", target, details)``).
"""

from __future__ import annotations

from collections.abc import Iterable

from honed.errors import InvalidArgument, ResidencyViolation
from honed.registry.records import ModelVersion
from honed.registry.refs import normalize_jurisdiction


def parse_declared(declared: str) -> tuple[str, ...]:
    """``"AE"`` or ``"AE, SA"`` -> ``("AE", "SA")``."""
    parts = [p for p in (s.strip() for s in declared.split(",")) if p]
    if not parts:
        raise ResidencyViolation("the request declares an empty data residency; declare a jurisdiction such as AE")
    try:
        return tuple(dict.fromkeys(normalize_jurisdiction(p) for p in parts))
    except InvalidArgument as exc:
        raise ResidencyViolation(f"the request's declared data residency is not valid: {exc}") from exc


def check_placement(version: ModelVersion, jurisdiction: str, *, allow_unlabelled: bool = False) -> str:
    """Allow ``version`` to be loaded on a server in ``jurisdiction`` or raise ResidencyViolation.

    Returns the normalised jurisdiction.
    """
    where = normalize_jurisdiction(jurisdiction)
    if not version.residency:
        if allow_unlabelled:
            return where
        raise ResidencyViolation(
            f"{version.ref} carries no residency label, so it may not be placed in {where}: label it with "
            f"`honed registry label {version.ref} --residency {where}` or opt out explicitly (allow unlabelled)"
        )
    if where not in version.residency:
        raise ResidencyViolation(
            f"{version.ref} may run only in {', '.join(version.residency)}, not in {where}; "
            "place it on a server approved for one of those, or relabel it if that is allowed"
        )
    return where


def check_request(
    declared: str | None, server_jurisdictions: Iterable[str], *, allow_unlabelled: bool = False
) -> str | None:
    """Allow a request whose data must stay in ``declared`` on a server approved for ``server_jurisdictions``.

    Returns the jurisdiction that matched (None for an undeclared request the operator allowed).
    """
    approved = tuple(normalize_jurisdiction(j) for j in server_jurisdictions)
    if declared is None or not declared.strip():
        if allow_unlabelled:
            return None
        raise ResidencyViolation(
            "the request does not declare its data residency and this server refuses undeclared data; "
            f"send the header X-Data-Residency (this server is approved for: {', '.join(approved) or 'nothing'})"
        )
    wanted = parse_declared(declared)
    for code in wanted:
        if code in approved:
            return code
    raise ResidencyViolation(
        f"the request's data must stay in {', '.join(wanted)}, but this server is approved only for "
        f"{', '.join(approved) or 'no jurisdiction'}; send it to a server in {wanted[0]}"
    )
