"""What every command shares: the consoles, JSON output, and the mapping of domain errors to exit codes."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from honed.errors import HonedError

console = Console()
"""For tables, progress bars and results people read (stdout)."""

err_console = Console(stderr=True)
"""For status lines that must not mix into machine-readable stdout."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout, nothing else, so it pipes into ``jq``."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def exit_code_for(error: HonedError) -> int:
    """Every domain error is a problem with what the user gave: exit 2, as the docs promise."""
    return EXIT_BAD_INPUT
