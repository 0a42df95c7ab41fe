"""Registering what ``honed optimize`` produced: the source model, then the winner as its child.

Reads the output folder (``model.onnx``, ``recipe.json``, ``report.json``) rather than the optimizer's
objects, so the registry stays downstream of the search and any optimize output folder can be registered.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honed.errors import InvalidArgument
from honed.jsonio import read_object
from honed.model.artifact import winner_file
from honed.registry.records import ModelVersion, OptimizeGate
from honed.registry.store import Registry

if TYPE_CHECKING:
    from honed.search.document import OptimizeReport

PRODUCTION = "production"


def default_actor(role: str | None = None) -> str:
    """``USER@HOST`` (or ``ROLE@HOST`` for a service such as the server), for the audit log."""
    if role is None:
        try:
            role = getpass.getuser()
        except (KeyError, OSError):
            role = "unknown"
    return f"{role}@{socket.gethostname()}"


def register_optimized(
    registry: Registry,
    source: str | Path,
    out_dir: str | Path,
    name: str,
    *,
    actor: str,
    tags: Iterable[str] = (),
) -> tuple[ModelVersion, ModelVersion]:
    """Register ``source`` (idempotent) and the optimized model in ``out_dir`` as its child version.

    The child carries the recipe that produced it and, as its profile, the winner's measured accuracy and
    latency on this hardware from report.json. A model without a ``production`` alias gets it on this version
    (so ``honed serve --registry URL`` serves it); a model that has one keeps it where it is.
    ``tags`` go on the optimized version (e.g. ``mlflow=models:/scorer/4``, where it was also written).
    Returns ``(source_version, optimized_version)``.
    """
    out = Path(out_dir)
    model = winner_file(out)
    if not model.is_file():
        raise InvalidArgument(f"{out} holds no model.onnx or model.xml: it is not an optimize output folder")
    # imported here: the registry (and the server that opens it) need not load the search to start
    from honed.search.document import REPORT_FILE, OptimizeReport

    recipe_file = out / "recipe.json"
    recipe = read_object(recipe_file, "recipe") if recipe_file.is_file() else None
    report_file = out / REPORT_FILE
    report = OptimizeReport.read(report_file) if report_file.is_file() else None
    parent = registry.register(source, name, actor=actor)
    child = registry.register(
        model,
        name,
        actor=actor,
        parent=parent.ref,
        recipe=recipe,
        profile=_profile(report) if report is not None else None,
        tags=tags,
    )
    if PRODUCTION not in registry.aliases(name):
        # A model's first optimized version is what it serves until a rollout moves the alias; later ones wait.
        registry.set_alias(name, PRODUCTION, child.version, actor=actor)
    return parent, child


def _profile(report: OptimizeReport) -> dict[str, Any]:
    """The winner's and the original's rows, the winner's bench rows and where they were measured (empty for a
    replay, which measures nothing)."""
    if report.replay is not None or report.winner is None or report.baseline is None or report.settings is None:
        return {}
    gate = report.gate.gate if report.gate is not None else None
    return {
        "gate": OptimizeGate(gate.metric, gate.min, gate.max).to_dict() if gate is not None else None,
        "winner": report.winner.to_dict(),
        "winner_results": [r.to_dict() for r in report.winner_results],
        "baseline": report.baseline.to_dict(),
        "hardware": dict(report.hardware or {}),
        "settings": report.settings.to_dict(),
    }
