"""The --eval loader and caller: every way a user's metric can be wrong is one actionable line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from honed.evaluate import UserMetricError, load_user_metric

GOOD = "import numpy as np\n\ndef score(candidate, reference, labels):\n    return float(np.mean(candidate['y']))\n"

# (file name, file text or None for no file, spec suffix, message fragment)
LOAD_ERRORS = [
    ("metric.py", None, "metric.py:score", "no file"),
    ("metric.txt", GOOD, "metric.txt:score", "not a .py file"),
    ("metric.py", "def score(:\n", "metric.py:score", "syntax error in"),
    ("metric.py", GOOD, "metric.py:scores", "defines no 'scores' (it defines: score)"),
    ("metric.py", "score = 3\n", "metric.py:score", "is a int, not a function"),
    ("metric.py", "raise ImportError('no torch here')\n", "metric.py:score", "raised ImportError: no torch here"),
    ("metric.py", GOOD, "metric.py", "takes FILE.py:FUNCTION"),
]

CALL_ERRORS = [
    ("def score(c, r, l):\n    raise ValueError('shapes differ')\n", "raised ValueError: shapes differ"),
    ("def score(c, r, l):\n    return 'high'\n", "returned str, not a number"),
    ("def score(c, r, l):\n    return None\n", "returned NoneType, not a number"),
    ("def score(c, r, l):\n    return float('nan')\n", "returned nan"),
    ("def score(c, r, l):\n    return float('inf')\n", "returned inf"),
    ("def score(c, r, l):\n    return True\n", "returned bool, not a number"),
]


@pytest.mark.parametrize(("name", "text", "spec", "message"), LOAD_ERRORS)
def test_load_errors(tmp_path: Path, name: str, text: str | None, spec: str, message: str) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(UserMetricError) as caught:
        load_user_metric(str(tmp_path / spec))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "message"), CALL_ERRORS)
def test_call_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "metric.py").write_text(text)
    metric = load_user_metric(f"{tmp_path / 'metric.py'}:score")
    y = {"y": np.ones((2, 3))}
    with pytest.raises(UserMetricError, match=r"metric\.py:score") as caught:
        metric.score(y, y, None)
    assert message in str(caught.value)


def test_good_file_and_callable(tmp_path: Path) -> None:
    (tmp_path / "metric.py").write_text(GOOD)
    metric = load_user_metric(f"{tmp_path / 'metric.py'}:score")
    assert metric.name == "metric.py:score"
    assert metric.score({"y": np.full((2, 2), 3.0)}, {"y": np.zeros((2, 2))}, None) == 3.0
    # a one-element array and numpy scalars count as numbers
    wrapped = load_user_metric(lambda c, r, labels: np.array([0.5]))
    assert wrapped.score({}, {}, None) == 0.5
    assert load_user_metric(lambda c, r, labels: np.float32(0.25)).score({}, {}, None) == 0.25
    # the fingerprint follows the code, so a changed metric is not served from the cache
    (tmp_path / "metric.py").write_text(GOOD.replace("np.mean", "np.max"))
    assert load_user_metric(f"{tmp_path / 'metric.py'}:score").fingerprint != metric.fingerprint
