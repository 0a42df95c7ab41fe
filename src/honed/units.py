"""Quantities users type on the command line and in files: durations, one grammar for every flag that takes one."""

from __future__ import annotations

import math
import re

from honed.errors import InvalidArgument

_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|min|h|m|s)?")


def parse_duration(value: str | float | int, what: str = "the duration") -> float:
    """Seconds (> 0) from plain seconds (``90``, ``0.5``) or ``500ms``, ``90s``, ``10m``, ``10min``, ``1h``, ``1h30m``.

    ``what`` names the flag or field in the error a bad value gets (``--time-budget``).
    """
    if isinstance(value, bool):
        raise InvalidArgument(f"{what} takes a duration such as 30s, 10m or 500ms; got {value!r}")
    seconds = float(value) if isinstance(value, int | float) else _parse_text(str(value), what)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"{what} must be a finite duration longer than zero; got {value!r}")
    return seconds


def _parse_text(text: str, what: str) -> float:
    raw = text.strip().lower()
    parts = list(_PART.finditer(raw))
    covered = "".join(m.group(0) for m in parts).replace(" ", "")
    if not parts or covered != raw.replace(" ", ""):
        raise InvalidArgument(f"{what} takes a duration such as 30s, 10m, 1h30m or 500ms; got {text!r}")
    units = [m.group(2) or "s" for m in parts]
    if len({_SECONDS[u] for u in units}) != len(units):
        raise InvalidArgument(f"{what}: give each unit once, e.g. 1h30m; got {text!r}")
    return sum(float(m.group(1)) * _SECONDS[unit] for m, unit in zip(parts, units, strict=True))
