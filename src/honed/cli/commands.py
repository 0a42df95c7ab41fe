"""Finds the command modules: every ``honed/cli/*_cmd.py`` exposes ``register(app)``.

Adding a command group is adding one such module; nothing else lists them.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import honed.cli

# The order commands appear in ``honed --help``: the main job first; any others follow alphabetically.
_ORDER = ("optimize", "bench", "inspect", "hw", "serve", "registry", "audit", "plan", "deploy", "demo")


def _rank(module: str) -> tuple[int, str]:
    name = module.removesuffix("_cmd")
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def register(app: typer.Typer) -> None:
    modules = [m.name for m in pkgutil.iter_modules(honed.cli.__path__) if m.name.endswith("_cmd")]
    for name in sorted(modules, key=_rank):
        importlib.import_module(f"honed.cli.{name}").register(app)
