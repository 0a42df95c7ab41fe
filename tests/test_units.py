"""One duration grammar for every flag and field that takes one."""

from __future__ import annotations

import pytest

from honed.errors import InvalidArgument
from honed.units import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("0.5", 0.5),
        ("500ms", 0.5),
        ("90s", 90.0),
        ("10m", 600.0),
        ("10min", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        (" 2H ", 7200.0),
        (45, 45.0),
        (1.5, 1.5),
    ],
)
def test_durations_users_type(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "m", "0", "0s", "-5s", "1m1m", "nan", "inf", True])
def test_bad_durations_name_the_flag(text: str | bool) -> None:
    with pytest.raises(InvalidArgument, match="--interval"):
        parse_duration(text, "--interval")  # type: ignore[arg-type]
