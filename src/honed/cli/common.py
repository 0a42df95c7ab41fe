"""What every command shares: the consoles, JSON output, and the mapping of domain errors to exit codes."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

from honed.errors import HonedError, InvalidArgument

if TYPE_CHECKING:
    from rich.progress import Progress

    from honed.registry import Registry
    from honed.runtime.config import RuntimeConfig

console = Console()
"""For tables, progress bars and results people read (stdout)."""

err_console = Console(stderr=True)
"""For status lines that must not mix into machine-readable stdout."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def progress_bar(*, bold: bool = True, transient: bool = False, disable: bool = False) -> Progress:
    """The progress bar of a long command (bench cases, search stages), on stderr so stdout stays the result."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}" if bold else "{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
        disable=disable,
    )


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout, nothing else, so it pipes into ``jq``."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(as_json: bool, data: Any, text: str, *, highlight: bool | None = None, soft_wrap: bool = False) -> None:
    """A command's result: ``data`` as JSON with ``--json``, else the line ``text`` for people."""
    if as_json:
        print_json(data)
    else:
        console.print(text, highlight=highlight, soft_wrap=soft_wrap)


def exit_code_for(error: HonedError) -> int:
    """Every domain error is a problem with what the user gave: exit 2, as the docs promise."""
    return EXIT_BAD_INPUT


def parse_int_list(text: str, flag: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; a clear error naming the flag otherwise."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidArgument(f"{flag} takes whole numbers separated by commas, e.g. 1,8,32; got {text!r}") from None
    if not values:
        raise InvalidArgument(f"{flag} needs at least one value")
    return values


def runtime_config(
    base: RuntimeConfig | None,
    *,
    backend: str | None = None,
    provider: str | None = None,
    graph_optimization: str | None = None,
    affinity: str | None = None,
    spinning: bool | None = None,
    inter_op: int | None = None,
) -> RuntimeConfig:
    """``base`` (a recipe's recorded runtime, or the defaults) with the runtime flags that were given laid over
    it; a flag that moves it to another backend drops the old backend's options and static shapes."""
    from honed.runtime.config import RuntimeConfig

    config = base or RuntimeConfig()
    changes: dict[str, Any] = {}
    if backend is not None and backend != config.backend:
        changes.update(backend=backend, options={}, static_shapes=())
    if provider is not None:
        changes["provider"] = provider
    if graph_optimization is not None:
        changes["graph_optimization"] = graph_optimization
    if affinity:
        changes["affinity"] = parse_int_list(affinity, "--affinity")
    if spinning is not None:
        changes["spinning"] = spinning
    if inter_op is not None:
        changes["inter_op_threads"] = inter_op
    return config.with_(**changes)


def mlflow_uri_option() -> Any:
    """``--mlflow-uri``: the tracking server a ``models:/`` or ``runs:/`` model argument is fetched from."""
    import typer

    return typer.Option(
        None,
        "--mlflow-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking server for a models:/NAME/VERSION, models:/NAME@ALIAS or runs:/ID/PATH model.",
        show_default=False,
    )


def registry_for(register_as: str | None, url: str | None) -> Registry | None:
    """The registry ``--register NAME`` writes to, opened now so that a bad name or an unreachable registry fails
    before the long work (a search, an export), not after it; None without ``--register``."""
    if register_as is None:
        return None
    from honed.registry import open_registry
    from honed.registry.refs import check_name

    check_name(register_as)
    return open_registry(url)


def otlp_endpoint_of(otlp_endpoint: str | None, trace_sample: float | None) -> str | None:
    """``--otlp-endpoint``, once ``--trace-sample`` is known not to come without it (tracing is off then)."""
    if trace_sample is not None and otlp_endpoint is None:
        raise InvalidArgument("--trace-sample needs --otlp-endpoint (tracing is off without one)")
    return otlp_endpoint


def use_mlflow_uri(uri: str | None) -> None:
    """Make ``--mlflow-uri`` the server MLflow model URIs are resolved on in this process."""
    if uri:
        from honed.intake.mlflow import set_tracking_uri

        set_tracking_uri(uri)
