"""Names and references: what a model name, an alias and a jurisdiction may look like, and parsing
``name``, ``name:3`` and ``name@production`` into a :class:`Ref`. Pure functions, no database."""

from __future__ import annotations

import re
from dataclasses import dataclass

from honed.errors import InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_JURISDICTION = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,15}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/=-]{0,127}$")


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set, or neither (= latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidArgument(
            f"invalid alias {alias!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "(e.g. production, canary)"
        )
    return alias


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise InvalidArgument(f"invalid tag {tag!r}: use 1-128 letters, digits or . _ : / = -")
    return tag


def normalize_jurisdiction(code: str) -> str:
    """A jurisdiction code such as ``AE``, ``EU`` or ``US-CA``, upper-cased."""
    if not isinstance(code, str) or not _JURISDICTION.match(code.strip()):
        raise InvalidArgument(
            f"invalid jurisdiction {code!r}: use a code such as AE, EU or US-CA (letters, digits and '-', 2-16 long)"
        )
    return code.strip().upper()


def parse_ref(ref: str) -> Ref:
    """Parse ``name``, ``name:3`` or ``name@alias``."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidArgument("empty model reference: give name, name:VERSION or name@ALIAS")
    text = ref.strip()
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(check_name(name), alias=check_alias(alias))
    if ":" in text:
        name, _, num = text.partition(":")
        if not num.isdigit() or int(num) < 1:
            raise InvalidArgument(f"invalid version in {ref!r}: versions are whole numbers from 1 (e.g. {name}:3)")
        return Ref(check_name(name), version=int(num))
    return Ref(check_name(text))
