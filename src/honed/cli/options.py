"""The flags several commands share, declared once as typed ``Annotated`` aliases.

A command writes ``registry: RegistryUrl = None`` and gets the flag, its environment variable and its help text
from here, so ``--registry`` or ``--json`` means the same on every command that takes it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import fields
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

R = TypeVar("R")

REGISTRY_ENV = "HONED_REGISTRY"

RegistryUrl = Annotated[
    str | None,
    typer.Option(
        "--registry",
        envvar=REGISTRY_ENV,
        help="Registry database URL (sqlite:///PATH or postgresql+psycopg://...); default SQLite under $HONED_HOME.",
        show_default=False,
    ),
]
"""``--registry`` of the commands that read or change the registry."""

RegisterRegistryUrl = Annotated[
    str | None,
    typer.Option(
        "--registry", envvar=REGISTRY_ENV, help="Registry URL for --register (default SQLite).", show_default=False
    ),
]
"""``--registry`` of a command whose result ``--register`` puts in the registry."""

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table or text.")]

Actor = Annotated[
    str | None,
    typer.Option("--actor", envvar="HONED_ACTOR", help="Who makes the change (for the audit log); default USER@HOST."),
]

Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]


def with_flags(flags_type: type[Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give a command the flags declared by the frozen dataclass ``flags_type`` (fields annotated with the aliases
    above, defaults as the fields'), gathered into one value passed as the command's keyword-only ``flags``.

    Typer sees the command's own parameters followed by the group's, so every command of a group takes the same
    flags with the same help, and the code that uses them (opening the registry, printing ``--json``) is written
    once, on the group.
    """
    hints = get_type_hints(flags_type, include_extras=True)
    group = [(f.name, hints[f.name], f.default) for f in fields(flags_type)]

    def wrap(command: Callable[..., R]) -> Callable[..., R]:
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "flags"]
        own_hints = get_type_hints(command, include_extras=True)

        @functools.wraps(command)
        def run_command(**values: Any) -> R:
            flags = flags_type(**{name: values.pop(name) for name, _, _ in group})
            return command(**values, flags=flags)

        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        run_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                *(p.replace(annotation=own_hints.get(p.name, p.annotation)) for p in own),
                *(inspect.Parameter(name, keyword, default=default, annotation=hint) for name, hint, default in group),
            ],
            return_annotation=own_hints.get("return", inspect.Signature.empty),
        )
        run_command.__annotations__ = {
            **{k: v for k, v in own_hints.items() if k != "flags"},
            **{name: hint for name, hint, _ in group},
        }
        return run_command

    return wrap
