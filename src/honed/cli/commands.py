"""The list of command modules; each exposes ``register(app)``. Add a command group here, one line."""

from __future__ import annotations

import importlib

import typer

_MODULES: tuple[str, ...] = ("honed.cli.optimize_cmd",)


def register(app: typer.Typer) -> None:
    for name in _MODULES:
        importlib.import_module(name).register(app)
