"""The ``honed`` entry point: builds the Typer app from the command modules and maps errors to exit codes."""

from __future__ import annotations

import os
import sys

import typer

from honed import __version__
from honed.cli.common import EXIT_FAILURE, exit_code_for
from honed.errors import HonedError

_HELP = "Make trained ONNX models fast, cheap and safe to run on the hardware you have."


def _version(value: bool) -> None:
    if value:
        typer.echo(f"honed {__version__}")
        raise typer.Exit()


def build_app(argv: list[str]) -> typer.Typer:
    """The Typer app for one invocation: the command ``argv`` names, or a listing of all of them for help."""
    from honed.cli import commands

    app = typer.Typer(
        name="honed",
        help=_HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    ) -> None:
        """Make trained ONNX models fast, cheap and safe to run on the hardware you have."""

    commands.register(app, argv)
    return app


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; domain errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app = build_app(sys.argv[1:] if argv is None else argv)
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
