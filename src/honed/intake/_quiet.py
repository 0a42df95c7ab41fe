"""Silencing the converters: torch.onnx, transformers and skl2onnx print progress, log and warn on every export.

Their chatter would bury honed's own progress display and, under ``-W error``, turn a good export into a crash.
What matters from an export is whether its outputs match the source, which :mod:`honed.intake.verify` measures.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOGGERS = ("torch", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "transformers", "skl2onnx")


@contextlib.contextmanager
def quiet_converters() -> Iterator[None]:
    """Run the body with the converters' warnings, log records and printed progress swallowed."""
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    saved_env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        for name in _LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            with _transformers_quiet():
                yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if saved_env is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = saved_env


@contextlib.contextmanager
def _transformers_quiet() -> Iterator[None]:
    """transformers draws its own progress bars (loading weights), switched off through its own switch."""
    import sys

    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is None:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def first_line(exc: BaseException) -> str:
    """The first line of a converter's error, colour codes removed: the part of a long report a user acts on."""
    text = _ANSI.sub("", str(exc)).strip()
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # torch.onnx wraps the real cause in a report whose first line only says which step failed
    if "## Exception summary" in lines[:-1]:
        return lines[lines.index("## Exception summary") + 1][:300]
    return lines[0][:300]
