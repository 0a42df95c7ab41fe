"""A user's own fidelity metric: ``--eval FILE.py:FUNCTION``, or a callable given to :func:`honed.optimize`.

The function takes ``(candidate_outputs, reference_outputs, labels)`` — two dicts of output name to the
array of every eval sample (samples on axis 0, in order), and the labels array or None — and returns one
finite number; the gate bounds it with ``--min`` (or ``--max``). :func:`load_user_metric` refuses, with one
line naming the fix, a file that is missing, not ``.py`` or does not compile, a missing or non-callable
function; :meth:`UserMetric.score` refuses a call that raises or returns a non-number, NaN or Inf.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import InvalidArgument

Array = np.ndarray[Any, Any]
UserFunction = Callable[[dict[str, Array], dict[str, Array], Array | None], Any]


class UserMetricError(InvalidArgument):
    """The user's metric could not be loaded, raised, or returned something that is not a finite number."""


@dataclass(frozen=True)
class UserMetric:
    """``name`` is how the report and the messages name it (``FILE.py:FUNCTION``, or the callable's name);
    ``fingerprint`` changes when its code does (it keys the candidate cache)."""

    name: str
    function: UserFunction
    fingerprint: str

    def score(self, candidate: Mapping[str, Array], reference: Mapping[str, Array], labels: Array | None) -> float:
        """The function's value on these outputs; :class:`UserMetricError` when it raises or returns no number."""
        try:
            value = self.function(dict(candidate), dict(reference), labels)
        except Exception as exc:  # the user's code may raise anything; say what and where
            raise UserMetricError(f"--eval {self.name} raised {type(exc).__name__}: {_first_line(exc)}") from exc
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(()).item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UserMetricError(f"--eval {self.name} returned {type(value).__name__}, not a number; return one float")
        number = float(value)
        if not math.isfinite(number):
            raise UserMetricError(f"--eval {self.name} returned {number}; return a finite number")
        return number

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint}


def load_user_metric(spec: str | Path | UserFunction) -> UserMetric:
    """The metric ``spec`` names: ``FILE.py:FUNCTION`` (``FILE`` relative to the working directory), or a callable."""
    if callable(spec):
        return _from_callable(spec)
    text = str(spec)
    path_text, sep, func_name = text.rpartition(":")
    if not sep or not path_text or not func_name:
        raise UserMetricError(f"--eval takes FILE.py:FUNCTION, e.g. my_metrics.py:score; got {text!r}")
    path = Path(path_text)
    if path.suffix != ".py":
        raise UserMetricError(f"--eval {text}: {path} is not a .py file; give a Python file and a function in it")
    if not path.is_file():
        raise UserMetricError(f"--eval {text}: no file {path}; check the path (relative to where honed runs)")
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise UserMetricError(f"--eval {text}: syntax error in {path} line {exc.lineno}: {exc.msg}") from exc
    try:
        namespace = runpy.run_path(str(path.absolute()), run_name="honed_user_metric")
    except Exception as exc:  # importing the user's file runs their code
        raise UserMetricError(f"--eval {text}: loading {path} raised {type(exc).__name__}: {_first_line(exc)}") from exc
    if func_name not in namespace:
        defined = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
        hint = f" (it defines: {', '.join(defined)})" if defined else ""
        raise UserMetricError(f"--eval {text}: {path} defines no {func_name!r}{hint}")
    function = namespace[func_name]
    if not callable(function):
        raise UserMetricError(f"--eval {text}: {func_name} in {path} is a {type(function).__name__}, not a function")
    fingerprint = hashlib.sha256(f"{func_name}\0{source}".encode()).hexdigest()
    return UserMetric(f"{path.name}:{func_name}", function, fingerprint)


def _from_callable(function: UserFunction) -> UserMetric:
    name = str(getattr(function, "__qualname__", None) or type(function).__name__)
    try:
        code = inspect.getsource(function)
    except (OSError, TypeError):
        code = f"{getattr(function, '__module__', '')}.{name}"
    return UserMetric(name, function, hashlib.sha256(code.encode()).hexdigest())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
