"""honed.fields: typed reads that name the file and the field, and the JSON form of frozen values."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import pytest

from honed.errors import InvalidArgument
from honed.fields import Document, Fields, as_dict, plain


class Colour(StrEnum):
    RED = "red"


@dataclass(frozen=True)
class Inner(Document):
    size: int
    label: str | None = None


@dataclass(frozen=True)
class Outer(Document):
    json_keys: ClassVar[Mapping[str, str]] = {"rate": "rate_per_s"}
    json_unless_none: ClassVar[tuple[str, ...]] = ("note",)

    name: str
    rate: float
    on: bool
    tags: tuple[str, ...]
    counts: dict[str, int]
    extra: Mapping[str, Any]
    inner: Inner
    inners: tuple[Inner, ...]
    note: str | None = None


def _outer() -> dict[str, Any]:
    return {
        "name": "a",
        "rate_per_s": 2,
        "on": True,
        "tags": ["x", "y"],
        "counts": {"n": 1},
        "extra": {"k": [1, 2]},
        "inner": {"size": 3},
        "inners": [{"size": 4, "label": "four"}, {"size": 5, "label": None}],
    }


def test_a_document_reads_its_declared_fields_and_writes_them_back() -> None:
    value = Outer.from_dict(_outer(), "f.json")
    assert value == Outer(
        name="a",
        rate=2.0,
        on=True,
        tags=("x", "y"),
        counts={"n": 1},
        extra={"k": [1, 2]},
        inner=Inner(3),
        inners=(Inner(4, "four"), Inner(5)),
    )
    assert isinstance(value.rate, float)
    written = value.to_dict()
    assert list(written) == ["name", "rate_per_s", "on", "tags", "counts", "extra", "inner", "inners"]
    assert written == _outer() | {"inner": {"size": 3, "label": None}}
    assert Outer.from_dict(json.loads(json.dumps(written)), "f.json") == value
    assert "note" in Outer.from_dict(_outer() | {"note": "hi"}, "f.json").to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("name"), "f.json: name must be a string, got None"),
        (lambda d: d.update(rate_per_s="fast"), "f.json: rate_per_s must be a number, got 'fast'"),
        (lambda d: d.update(rate_per_s=True), "f.json: rate_per_s must be a number, got True"),
        (lambda d: d.update(rate_per_s=math.inf), "f.json: rate_per_s must be a number, got inf"),
        (lambda d: d.update(on=1), "f.json: on must be true or false, got 1"),
        (lambda d: d.update(tags=["x", 2]), "f.json: tags must be a list of strings"),
        (lambda d: d.update(counts={"n": True}), "f.json: counts must be an object of int values"),
        (lambda d: d["inner"].update(size="3"), "f.json: inner: size must be a whole number, got '3'"),
        (lambda d: d["inners"][1].update(size=1.5), "f.json: inners[1]: size must be a whole number"),
        (lambda d: d.update(inner=[1]), "f.json: inner must be a JSON object, got list"),
        (lambda d: d.update(note=7), "f.json: note must be a string, got 7"),
    ],
)
def test_a_wrong_field_is_named_with_where_it_stands_and_what_was_expected(change: Any, message: str) -> None:
    data = _outer()
    change(data)
    with pytest.raises(InvalidArgument) as err:
        Outer.from_dict(data, "f.json")
    assert message in str(err.value)


class _Hinted(Fields):
    wrong_says = "{where}.{key} must be {expected}, got {value} (rewrite it)"
    missing_says = "{where}: missing {key!r}"
    not_object_says = "{where} is {type}, not an object"
    null_needs_key = True
    finite_only = False
    or_null = " or null"


def test_a_document_phrases_its_complaints_with_its_own_templates() -> None:
    f = _Hinted({"a": "x", "n": None, "big": math.inf}, "r.json")
    with pytest.raises(InvalidArgument, match=r"^r\.json: missing 'b'$"):
        f.text("b")
    with pytest.raises(InvalidArgument, match=r"^r\.json\.a must be a number, got 'x' \(rewrite it\)$"):
        f.number("a")
    with pytest.raises(InvalidArgument, match=r"^r\.json: missing 'gone'$"):
        f.opt_text("gone")  # present-but-null only
    assert f.opt_text("n") is None
    assert f.number("big") == math.inf
    with pytest.raises(InvalidArgument, match=r"^r\.json is list, not an object$"):
        _Hinted([], "r.json")


def test_bounds_defaults_and_minimums() -> None:
    f = Fields({"zero": 0, "neg": -1.5, "n": 2}, "x")
    assert f.number("zero", bound=">= 0") == 0.0
    with pytest.raises(InvalidArgument, match="x: zero must be > 0, got 0"):
        f.number("zero", bound="> 0")
    with pytest.raises(InvalidArgument, match=r"x: neg must be >= 0, got -1\.5"):
        f.opt_number("neg", bound=">= 0")
    assert f.number("absent", default=1.0) == 1.0
    assert f.whole("absent", minimum=1, default=7) == 7
    with pytest.raises(InvalidArgument, match="x: n must be a whole number >= 3, got 2"):
        f.whole("n", minimum=3)
    assert f.opt_whole("absent") is None and f.opt_number("absent") is None
    assert f.text("absent", default="") == "" and f.strings("absent", default=()) == ()
    with pytest.raises(InvalidArgument, match="x: n must be a string, got 2"):
        f.text("n", default="")


def test_given_fields_are_taken_as_read() -> None:
    value = Fields(_outer() | {"rate": 9.0}, "f.json").read(Outer, name="given")
    assert value.name == "given" and value.rate == 9.0


def test_a_field_of_a_type_it_cannot_read_is_a_programming_error() -> None:
    @dataclass(frozen=True)
    class Stamped(Document):
        at: datetime

    with pytest.raises(TypeError, match="cannot read a field of type"):
        Stamped.from_dict({"at": "2026-01-01"}, "s.json")


def test_plain_and_as_dict_give_json_values() -> None:
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert plain({"c": Colour.RED, "t": (1, (2,)), "at": when}) == {"c": "red", "t": [1, [2]], "at": when.isoformat()}
    assert as_dict(Inner(1), keys={"size": "n"}, unless_none=("label",)) == {"n": 1}
    with pytest.raises(TypeError):
        as_dict({"not": "a dataclass"})


def test_a_json_file_that_is_missing_truncated_or_not_an_object_is_named(tmp_path: Any) -> None:
    from honed.jsonio import read_json, read_object

    with pytest.raises(InvalidArgument, match=r"plan not found: .*nope\.json \(write one with honed plan\)"):
        read_json(tmp_path / "nope.json", "plan", hint="write one with honed plan")
    cut = tmp_path / "cut.json"
    cut.write_text('{"a": ')
    with pytest.raises(InvalidArgument, match=r"cut\.json is not valid JSON \(truncated\?\)"):
        read_json(cut)
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    with pytest.raises(InvalidArgument, match=r"the recipe file .*list\.json must hold a JSON object"):
        read_object(listed, "recipe")
    listed.write_text('{"ok": true}')
    assert read_object(listed, "recipe") == {"ok": True}
