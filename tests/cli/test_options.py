"""Shared flags: a flag group declared once reaches the command as one value, with the group's defaults,
environment variables and help, after the command's own arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from typer.testing import CliRunner

from honed.cli.options import JsonFlag, RegistryUrl, with_flags


@dataclass(frozen=True)
class _Group:
    registry: RegistryUrl = None
    as_json: JsonFlag = False
    limit: Annotated[int, typer.Option("--limit", help="How many.")] = 3


def _app(seen: list[tuple[str, _Group]]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @with_flags(_Group)
    def show(name: Annotated[str, typer.Argument(help="A name.")], *, flags: _Group) -> None:
        seen.append((name, flags))

    @app.command()
    def other() -> None:  # a second command, so that ``show`` is a subcommand
        pass

    return app


def test_the_group_reaches_the_command_as_one_value_with_its_defaults() -> None:
    seen: list[tuple[str, _Group]] = []
    result = CliRunner().invoke(_app(seen), ["show", "scorer"], env={"HONED_REGISTRY": ""})
    assert result.exit_code == 0, result.output
    assert seen == [("scorer", _Group())]


def test_flags_and_environment_fill_the_group() -> None:
    seen: list[tuple[str, _Group]] = []
    args = ["show", "scorer", "--json", "--limit", "7"]
    result = CliRunner().invoke(_app(seen), args, env={"HONED_REGISTRY": "sqlite:///r.db"})
    assert result.exit_code == 0, result.output
    assert seen == [("scorer", _Group(registry="sqlite:///r.db", as_json=True, limit=7))]


def test_a_bad_value_for_a_group_flag_is_a_usage_error() -> None:
    result = CliRunner().invoke(_app([]), ["show", "scorer", "--limit", "many"])
    assert result.exit_code == 2
    assert "--limit" in result.output
