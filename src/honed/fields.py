"""The fields of a JSON (or YAML) document, both ways: typed reads that name the file and the field, and the JSON
form of a frozen value.

Every document that crosses a package line (bench-v1, report.json, plan.json, the fleet and deployment files)
reads its objects through :class:`Fields`: ``Fields(data, "plan.json: placements[0]").number("peak_rps")``
returns a float or raises :class:`~honed.errors.InvalidArgument` saying where, which field and what was expected.
A document phrases its complaints its own way (a hint to regenerate the file, ``a.b`` or ``a: b`` paths) with
the message templates of a :class:`Fields` subclass; the checks themselves live here once. :meth:`Fields.read`
reads a whole dataclass by its annotations.

:func:`as_dict` is the other direction: a dataclass's fields, in declaration order, as JSON values. A value that
is nothing more than its fields subclasses :class:`Document` and has both for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields as dataclass_fields
from dataclasses import is_dataclass
from datetime import datetime
from enum import Enum
from functools import cache
from pathlib import PurePath
from types import UnionType
from typing import Any, ClassVar, Literal, Self, TypeVar, cast, get_args, get_origin, get_type_hints

from honed.errors import InvalidArgument

_ABSENT: Any = object()
D = TypeVar("D")
Bound = Literal[">= 0", "> 0"]


class Fields:
    """Typed reads of one JSON object with where it stands (``file: path``), so every complaint names the field.

    ``opt_*`` reads return None for a null; for an absent field too, unless ``null_needs_key`` (then only a
    field that is present may be null).
    """

    not_object_says: ClassVar[str] = "{where} must be a JSON object, got {type}"
    wrong_says: ClassVar[str] = "{where}: {key} must be {expected}, got {value}"
    missing_says: ClassVar[str] = wrong_says
    """How this document phrases a complaint: ``str.format`` templates of ``where``, ``key``, ``expected``,
    ``value`` (the value as :meth:`render` shows it) and ``type`` (its type's name)."""
    number_kind: ClassVar[str] = "a number"
    """How :meth:`number` names what it wants in a complaint."""
    finite_only: ClassVar[bool] = True
    """Whether :meth:`number` refuses NaN and infinities."""
    null_needs_key: ClassVar[bool] = False
    or_null: ClassVar[str] = ""
    """What an ``opt_*`` read adds to what it expected (e.g. ``" or null"``)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise InvalidArgument(self._say(self.not_object_says, where, "", "", data))
        self.data: Mapping[str, Any] = data
        self.where = where

    @classmethod
    def render(cls, value: Any) -> str:
        return repr(value)

    @classmethod
    def _say(cls, template: str, where: str, key: str, expected: str, value: Any) -> str:
        shown = cls.render(value)
        return template.format(where=where, key=key, expected=expected, value=shown, type=type(value).__name__)

    def wrong(self, key: str, expected: str) -> InvalidArgument:
        return InvalidArgument(self._say(self.wrong_says, self.where, key, expected, self.data.get(key)))

    def missing(self, key: str, expected: str) -> InvalidArgument:
        return InvalidArgument(self._say(self.missing_says, self.where, key, expected, None))

    def at(self, key: str) -> str:
        """Where the field ``key`` stands: ``file: key`` below the top, ``file: a.key`` further down."""
        return f"{self.where}.{key}" if ": " in self.where else f"{self.where}: {key}"

    # --- reads ---------------------------------------------------------------------------------------------

    def raw(self, key: str, expected: str = "present") -> Any:
        if key not in self.data:
            raise self.missing(key, expected)
        return self.data[key]

    def _checked(self, key: str, expected: str, ok: Callable[[Any], bool], nullable: bool = False) -> Any:
        """The value of ``key`` where ``ok(value)``; with ``nullable``, None for a null (or an absent field)."""
        if nullable:
            expected += self.or_null
            if key not in self.data and not self.null_needs_key:
                return None
        value = self.raw(key, expected)
        if nullable and value is None:
            return None
        if not ok(value):
            raise self.wrong(key, expected)
        return value

    def text(self, key: str, *, default: str = _ABSENT) -> str:
        if default is not _ABSENT and key not in self.data:
            return default
        value: str = self._checked(key, "a string", _is_str)
        return value

    def opt_text(self, key: str) -> str | None:
        value: str | None = self._checked(key, "a string", _is_str, nullable=True)
        return value

    def flag(self, key: str) -> bool:
        value: bool = self._checked(key, "true or false", lambda v: isinstance(v, bool))
        return value

    def number(self, key: str, *, bound: Bound | None = None, default: float = _ABSENT) -> float:
        """A real number (never a bool); ``bound`` ``">= 0"`` or ``"> 0"`` refuses what lies below."""
        if default is not _ABSENT and key not in self.data:
            return default
        return self._bounded(key, self._checked(key, self.number_kind, self._is_number), bound)

    def opt_number(self, key: str, *, bound: Bound | None = None) -> float | None:
        value = self._checked(key, self.number_kind, self._is_number, nullable=True)
        return None if value is None else self._bounded(key, value, bound)

    def _bounded(self, key: str, value: Any, bound: Bound | None) -> float:
        if bound is not None and (value < 0 or (bound == "> 0" and value == 0)):
            raise self.wrong(key, bound)
        return float(value)

    def _is_number(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return math.isfinite(value) or not self.finite_only

    def whole(self, key: str, *, minimum: int | None = None, default: int = _ABSENT) -> int:
        """An integer (never a bool), at least ``minimum`` when given; ``default`` where the field is absent."""
        if default is not _ABSENT and key not in self.data:
            return default
        value: int = self._checked(key, _whole_kind(minimum), _is_whole(minimum))
        return value

    def opt_whole(self, key: str, *, minimum: int | None = None) -> int | None:
        value: int | None = self._checked(key, _whole_kind(minimum), _is_whole(minimum), nullable=True)
        return value

    def obj(self, key: str) -> Mapping[str, Any]:
        """A nested JSON object as it stands (for parts carried through unread)."""
        value: Mapping[str, Any] = self._checked(key, "a JSON object", _is_mapping)
        return value

    def opt_obj(self, key: str) -> Mapping[str, Any] | None:
        value: Mapping[str, Any] | None = self._checked(key, "a JSON object", _is_mapping, nullable=True)
        return value

    def items(self, key: str) -> list[Any]:
        value: list[Any] = self._checked(key, "a list", lambda v: isinstance(v, list))
        return value

    def nested(self, key: str) -> Fields:
        """A nested object, read with the same phrasing, standing at :meth:`at`."""
        return type(self)(self.raw(key), self.at(key))

    def objects(self, key: str) -> list[Fields]:
        """A list of objects, each standing at ``key[i]``."""
        return [type(self)(item, f"{self.at(key)}[{i}]") for i, item in enumerate(self.items(key))]

    def strings(self, key: str, *, default: tuple[str, ...] = _ABSENT) -> tuple[str, ...]:
        if default is not _ABSENT and key not in self.data:
            return default
        return tuple(self._checked(key, "a list of strings", _is_strings))

    def opt_strings(self, key: str) -> tuple[str, ...] | None:
        value = self._checked(key, "a list of strings", _is_strings, nullable=True)
        return None if value is None else tuple(value)

    def wholes(self, key: str) -> tuple[int, ...]:
        return tuple(self._checked(key, "a list of whole numbers", _is_wholes))

    def mapping(self, key: str, of: type) -> dict[str, Any]:
        """An object of ``of`` values (never bools) keyed by strings."""

        def ok(v: Any) -> bool:
            return _is_mapping(v) and all(
                isinstance(k, str) and isinstance(x, of) and not isinstance(x, bool) for k, x in v.items()
            )

        return dict(self._checked(key, f"an object of {of.__name__} values", ok))

    def read(self, cls: type[D], keys: Mapping[str, str] | None = None, **given: Any) -> D:
        """An instance of the dataclass ``cls``, each field read by its annotation (``keys`` renames JSON keys)
        but those ``given`` (read by the caller, for a rule of their own).

        ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``, ``tuple[int, ...]``, ``dict[str, V]``,
        ``Mapping[str, Any]``, a class with ``from_dict(data, where)`` or a tuple (or list) of them, each
        optionally ``| None``.
        """
        hints = _hints(cast(type, cls))
        names = keys or {}
        read = self._typed
        values = {
            f.name: given[f.name] if f.name in given else read(names.get(f.name, f.name), hints[f.name])
            for f in dataclass_fields(cast(Any, cls))
        }
        return cls(**values)

    def _typed(self, key: str, hint: Any) -> Any:
        if isinstance(hint, UnionType):
            (hint,) = (a for a in get_args(hint) if a is not type(None))
            optional = _optional_read(hint)
            if optional is not None:
                return getattr(self, optional)(key)
            if self._checked(key, "a JSON value", lambda v: True, nullable=True) is None:
                return None
        args, origin = get_args(hint), get_origin(hint)
        if hint in _READS:
            return getattr(self, _READS[hint])(key)
        if origin is tuple and args[0] in (str, int):
            return self.strings(key) if args[0] is str else self.wholes(key)
        if origin in (tuple, list):
            values = [args[0].from_dict(item.data, item.where) for item in self.objects(key)]
            return tuple(values) if origin is tuple else values
        if origin is dict:
            return self.mapping(key, args[1])
        if origin is Mapping:
            return self.obj(key)
        if not hasattr(hint, "from_dict"):
            raise TypeError(f"Fields.read cannot read a field of type {hint!r} ({self.at(key)})")
        return hint.from_dict(self.raw(key), self.at(key))


_READS: dict[Any, str] = {str: "text", bool: "flag", int: "whole", float: "number"}


def _optional_read(hint: Any) -> str | None:
    """The ``opt_*`` read of a nullable field of type ``hint``, where there is one."""
    if get_origin(hint) is tuple and get_args(hint)[0] is str:
        return "opt_strings"
    if get_origin(hint) is Mapping:
        return "opt_obj"
    return {str: "opt_text", int: "opt_whole", float: "opt_number"}.get(hint)


class Document:
    """A frozen dataclass whose JSON form is its fields: :func:`as_dict` out, :meth:`Fields.read` in.

    ``json_keys`` renames fields in the JSON, ``json_unless_none`` leaves those fields out while they are None,
    ``reader`` is the :class:`Fields` (phrasing) of the document the value belongs to.
    """

    json_keys: ClassVar[Mapping[str, str]] = {}
    json_unless_none: ClassVar[tuple[str, ...]] = ()
    reader: ClassVar[type[Fields]] = Fields

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self, keys=self.json_keys, unless_none=self.json_unless_none)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Self:
        return cls.reader(data, where).read(cls, cls.json_keys)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def _is_wholes(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _whole_kind(minimum: int | None) -> str:
    return "a whole number" if minimum is None else f"a whole number >= {minimum}"


def _is_whole(minimum: int | None) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)

    return ok


def known_keys(what: str, data: Any, cls: type) -> dict[str, Any]:
    """``data`` as a dict, refused (naming ``what``) unless it is a mapping whose keys are all fields of the
    dataclass ``cls``: the check of a hand-written config section before its values are read."""
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{what} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclass_fields(cls)}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise InvalidArgument(f"unknown {what} key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dict(data)


def plain(value: Any) -> Any:
    """``value`` as JSON: ``to_dict()`` of a value that has one, lists for tuples and lists, dicts for mappings,
    an enum's value, an ISO datetime, a path's text; anything else as it is."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def as_dict(obj: Any, *, keys: Mapping[str, str] | None = None, unless_none: Collection[str] = ()) -> dict[str, Any]:
    """A dataclass's fields in declaration order as JSON values (:func:`plain`).

    ``keys`` renames fields on the way out; a field in ``unless_none`` is left out while it is None.
    """
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"as_dict takes a dataclass instance, got {type(obj).__name__}")
    names = keys or {}
    out: dict[str, Any] = {}
    for f in dataclass_fields(obj):
        value = getattr(obj, f.name)
        if value is None and f.name in unless_none:
            continue
        out[names.get(f.name, f.name)] = plain(value)
    return out
