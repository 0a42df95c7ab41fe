"""Finds the command modules: every ``honed/cli/*_cmd.py`` exposes ``register(app)`` and a ``COMMANDS`` table.

Adding a command group is adding one such module; nothing else lists them. ``COMMANDS`` (a literal
``{name: one-line help}`` dict) is read from the module's source without importing it, so ``honed --help`` lists
every command without loading ONNX Runtime, SQLAlchemy and the rest, and ``honed NAME ...`` imports only the
module that defines NAME.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import typer

import honed.cli

# The order commands appear in ``honed --help``: the main job first; any others follow alphabetically.
_ORDER = (
    "optimize",
    "bench",
    "import",
    "inspect",
    "hw",
    "serve",
    "access",
    "registry",
    "audit",
    "plan",
    "deploy",
    "export",
    "demo",
)


def manifest() -> dict[str, tuple[str, str]]:
    """Every command name -> (its module, its one-line help), in ``honed --help`` order."""
    found: dict[str, tuple[str, str]] = {}
    folder = Path(honed.cli.__path__[0])
    for info in pkgutil.iter_modules(honed.cli.__path__):
        if info.name.endswith("_cmd"):
            for name, summary in _declared(folder / f"{info.name}.py").items():
                found[name] = (info.name, summary)
    return {name: found[name] for name in sorted(found, key=_rank)}


def register(app: typer.Typer, argv: list[str]) -> None:
    """Register the real command ``argv`` names, or, when it names none, a listing of every command."""
    commands = manifest()
    wanted = next((arg for arg in argv if not arg.startswith("-")), None)
    if wanted in commands:
        importlib.import_module(f"honed.cli.{commands[wanted][0]}").register(app)
        return
    for name, (_, summary) in commands.items():
        app.command(name, help=summary, add_help_option=False)(_listed_only)


def _listed_only() -> None:  # pragma: no cover - run() always registers the real command it dispatches to
    raise typer.Exit(2)


def _declared(path: Path) -> dict[str, str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in node.targets):
            table = ast.literal_eval(node.value)
            if isinstance(table, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
                return table
    raise RuntimeError(f"{path.name} defines no COMMANDS = {{name: help}} table")


def _rank(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)
