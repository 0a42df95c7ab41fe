"""The runner's source shipped inside honed (``honed/edge/runner/honed_edge``) and how honed starts it.

Every start goes through :func:`runner_command`: the interpreter running honed, with ``-E -s -B`` so neither
``PYTHONPATH`` nor the user's site folder leaks in and no bytecode is written into the bundle.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

RUNNER_PACKAGE = "honed_edge"


def runner_source() -> Path:
    """The folder holding the runner's ``*.py`` files (package data of an installed honed)."""
    folder = Path(str(resources.files("honed.edge").joinpath("runner", RUNNER_PACKAGE)))
    if not (folder / "__main__.py").is_file():
        raise FileNotFoundError(f"honed's edge runner is missing from {folder}; reinstall honed")
    return folder


def copy_runner(bundle: Path) -> list[Path]:
    """Copy the runner's sources into ``bundle/honed_edge``; returns the files written."""
    target = bundle / RUNNER_PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(runner_source().glob("*.py")):
        written.append(Path(shutil.copyfile(source, target / source.name)))
    return written


def runner_command(*args: str) -> list[str]:
    """``python -m honed_edge ARGS`` for a subprocess whose working directory is the bundle."""
    return [sys.executable, "-E", "-s", "-B", "-m", RUNNER_PACKAGE, *args]


def python_command(code: str, *args: str) -> list[str]:
    """``python -c CODE ARGS`` with the same isolation as :func:`runner_command`."""
    return [sys.executable, "-E", "-s", "-B", "-c", code, *args]
