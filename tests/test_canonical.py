"""Canonical JSON is one exact text: audit chains written before stay verifiable, cache keys stay stable."""

from __future__ import annotations

import hashlib
import math
from datetime import date

import pytest

from honed.canonical import canonical_json, digest


def test_the_text_is_sorted_compact_and_utf8() -> None:
    value = {"b": [1, 2.5, None], "a": {"ü": "région", "z": True}}
    assert canonical_json(value) == '{"a":{"z":true,"ü":"région"},"b":[1,2.5,null]}'
    assert digest(value) == hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
    assert digest({"x": 1, "y": 2}) == digest({"y": 2, "x": 1})


def test_lenient_text_writes_other_values_as_strings_and_strict_refuses_them() -> None:
    assert canonical_json({"day": date(2026, 12, 4)}) == '{"day":"2026-12-04"}'
    with pytest.raises(TypeError):
        canonical_json({"day": date(2026, 12, 4)}, strict=True)
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan}, strict=True)
