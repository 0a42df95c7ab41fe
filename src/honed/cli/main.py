"""The ``honed`` entry point: builds the Typer app from the command modules and maps errors to exit codes."""

from __future__ import annotations

import os
import sys

import typer

from honed import __version__
from honed.cli.common import EXIT_FAILURE, exit_code_for
from honed.errors import HonedError

app = typer.Typer(
    name="honed",
    help="Make trained ONNX models fast, cheap and safe to run on the hardware you have.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"honed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Make trained ONNX models fast, cheap and safe to run on the hardware you have."""


def _register_commands() -> None:
    from honed.cli import commands

    commands.register(app)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; domain errors become one line on stderr and exit code 2, never a traceback."""
    _register_commands()
    try:
        app(args=argv, prog_name="honed", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except HonedError as exc:
        sys.stderr.write(f"honed: error: {exc}\n")
        return exit_code_for(exc)
    except KeyboardInterrupt:
        sys.stderr.write("honed: interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get("HONED_DEBUG"):
            raise
        sys.stderr.write(
            f"honed: internal error: {type(exc).__name__}: {exc}\n"
            "honed: this is a bug; rerun with HONED_DEBUG=1 for the traceback and report it\n"
        )
        return EXIT_FAILURE
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
