"""The command listing: every command is found, its one-line help matches the real command, help stays light."""

from __future__ import annotations

import subprocess
import sys

import typer.main

from honed.cli.commands import manifest
from honed.cli.main import build_app, run


def test_manifest_lists_every_command_in_help_order() -> None:
    names = list(manifest())
    assert names[:2] == ["optimize", "bench"]
    assert {"inspect", "hw", "serve", "registry", "audit", "plan", "deploy", "demo"} <= set(names)


def test_each_listed_help_line_matches_the_real_command() -> None:
    for name, (_module, summary) in manifest().items():
        group = typer.main.get_command(build_app([name]))
        command = group.commands[name]  # type: ignore[attr-defined]
        assert command.get_short_help_str(limit=300) == summary, name


def test_unknown_command_is_a_usage_error() -> None:
    assert run(["no-such-command"]) == 2


def test_top_level_help_loads_no_heavy_library() -> None:
    code = (
        "import sys; from honed.cli.main import run; run(['--help']); "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'numpy', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
