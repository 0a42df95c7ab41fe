"""The gate through ``honed optimize``: a user's own metric (--eval), the attention mask, pooled-cosine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from honed.cli.main import run
from honed.errors import InvalidArgument
from honed.evaluate import UserMetricError
from honed.report import candidates_table
from honed.search import optimize
from tests.graphs import padded_batch, tiny_encoder

Array = np.ndarray[Any, Any]
FAST: dict[str, Any] = {"measure_s": 0.02, "final_rounds": 2, "backends": ["onnxruntime"], "tune_runtime": False}
FAST_FLAGS = ["--measure", "0.02", "--rounds", "2", "--backends", "onnxruntime", "--no-tune"]

COSINE = """import numpy as np

def score(candidate, reference, labels):
    c, r = candidate["probs"], reference["probs"]
    cos = (c * r).sum(axis=1) / (np.linalg.norm(c, axis=1) * np.linalg.norm(r, axis=1))
    return float(cos.min())
"""

# (file name, file text or None: no file, the --eval spec, what the one line says)
BAD_EVAL = [
    ("m.py", None, "m.py:score", "no file"),
    ("m.txt", COSINE, "m.txt:score", "not a .py file"),
    ("m.py", "def score(c, r, l)\n    return 1.0\n", "m.py:score", "syntax error"),
    ("m.py", COSINE, "m.py:cosine", "defines no 'cosine'"),
    ("m.py", "score = [1.0]\n", "m.py:score", "not a function"),
    ("m.py", "def score(c, r, l):\n    return c['nope']\n", "m.py:score", "raised KeyError"),
    ("m.py", "def score(c, r, l):\n    return {'cos': 1.0}\n", "m.py:score", "returned dict, not a number"),
    ("m.py", "def score(c, r, l):\n    return float('nan')\n", "m.py:score", "returned nan"),
    ("m.py", "def score(c, r, l):\n    return -float('inf')\n", "m.py:score", "returned -inf"),
]


@pytest.mark.parametrize(("name", "text", "spec", "message"), BAD_EVAL)
def test_bad_eval_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path,
    model: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str | None,
    spec: str,
    message: str,
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    argv = ["optimize", str(model), "--data", str(data), "--eval", str(tmp_path / spec), "--min", "0.9"]
    code = run([*argv, "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--time-budget", "30s", *FAST_FLAGS])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("honed: error: --eval") and message in lines[0], err
    assert not out.exists()


def test_eval_needs_a_bound_and_replaces_metric(tmp_path: Path, model: Path, data: Path) -> None:
    (tmp_path / "m.py").write_text(COSINE)
    spec = f"{tmp_path / 'm.py'}:score"
    with pytest.raises(InvalidArgument, match="needs a bound"):
        optimize(model, out=tmp_path / "out", data=data, eval_metric=spec, **FAST)
    with pytest.raises(InvalidArgument, match="replaces --metric"):
        optimize(model, out=tmp_path / "out", data=data, eval_metric=spec, metric="cosine", minimum=0.9, **FAST)
    assert not (tmp_path / "out").exists()


def test_good_eval_end_to_end_through_the_cli(
    tmp_path: Path, model: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "metrics.py").write_text(COSINE)
    out = tmp_path / "out"
    argv = ["optimize", str(model), "--data", str(data), "--eval", f"{tmp_path / 'metrics.py'}:score"]
    argv += ["--min", "0.95", "--passes", "int8-dynamic", "--time-budget", "40s", "--out", str(out)]
    code = run([*argv, "--cache-dir", str(tmp_path / "cache"), "--json", *FAST_FLAGS])
    assert code in (0, 3), capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    gate = report["gate"]
    assert gate["metric"] == "eval" and gate["name"] == "metrics.py:score" and gate["min"] == 0.95
    assert gate["describe"] == "metrics.py:score >= 0.95"
    assert report["baseline"]["fidelity"]["user_metric"] == pytest.approx(1.0)
    _judged_by_the_user_metric(report, 0.95)  # candidates this tiny may all be measured slower and not judged
    assert "metrics.py:score" in (out / "report.html").read_text()


def _judged_by_the_user_metric(report: dict[str, Any], bound: float) -> int:
    judged = [c for c in report["candidates"][1:] if c["status"] in ("accepted", "rejected")]
    for row in judged:
        value = row["fidelity"]["user_metric"]
        assert row["metric_value"] == pytest.approx(value)
        assert (row["status"] == "accepted") == (value >= bound), row
    return len(judged)


def test_python_api_takes_a_callable(tmp_path: Path, model: Path, data: Path) -> None:
    seen: list[tuple[tuple[int, ...], bool]] = []

    def worst_agreement(candidate: dict[str, Array], reference: dict[str, Array], labels: Array | None) -> float:
        seen.append((candidate["probs"].shape, labels is None))
        return float(np.mean(candidate["probs"].argmax(1) == reference["probs"].argmax(1)))

    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        eval_metric=worst_agreement,
        minimum=0.9,
        passes=["int8-dynamic"],
        time_budget="40s",
        cache_dir=tmp_path / "cache",
        evaluate_slower=True,
        **FAST,
    )
    assert _judged_by_the_user_metric(result.report, 0.9) >= 1
    assert result.document.gate is not None and result.document.gate.metric.endswith("worst_agreement")
    assert seen and all(shape == (40, 4) and no_labels for shape, no_labels in seen)  # every eval sample at once
    assert result.document.baseline is not None and result.document.baseline.metric_value == 1.0

    def broken(candidate: dict[str, Array], reference: dict[str, Array], labels: Array | None) -> float:
        raise ZeroDivisionError("oops")

    with pytest.raises(UserMetricError, match="raised ZeroDivisionError: oops"):
        optimize(model, out=tmp_path / "out2", data=data, eval_metric=broken, minimum=0.9, **FAST)
    assert not (tmp_path / "out2").exists()


@pytest.fixture
def encoder(tmp_path: Path) -> tuple[Path, Path]:
    path = tiny_encoder(tmp_path / "encoder.onnx")
    data = tmp_path / "padded.npz"
    np.savez(data, **padded_batch(40))
    return path, data


def test_mask_found_stated_and_overridable(tmp_path: Path, encoder: tuple[Path, Path]) -> None:
    path, data = encoder
    common: dict[str, Any] = {"data": data, "passes": ["graph"], "time_budget": "30s", **FAST}
    found = optimize(path, out=tmp_path / "a", metric="pooled-cosine", cache_dir=tmp_path / "cache", **common)
    assert found.report["gate"]["mask"] == {"input": "attention_mask", "source": "auto"}
    assert found.report["gate"]["metric"] == "pooled-cosine"
    assert found.report["baseline"]["fidelity"]["outputs"]["last_hidden_state"]["pooled_cosine_mean"] == 1.0
    assert "padded positions left out: input &#x27;attention_mask&#x27;" in (tmp_path / "a" / "report.html").read_text()
    console = Console(record=True, width=200)
    console.print(candidates_table(found.document))
    assert "padded positions left out: input 'attention_mask' (found by name and values)" in console.export_text()
    off = optimize(path, out=tmp_path / "b", mask=False, cache_dir=tmp_path / "cache", **common)
    assert off.report["gate"]["mask"] == {"input": None, "source": "--no-mask"}
    named = optimize(path, out=tmp_path / "c", mask_input="attention_mask", cache_dir=tmp_path / "cache", **common)
    assert named.report["gate"]["mask"] == {"input": "attention_mask", "source": "--mask-input"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mask-input", "input_ids"], "--mask-input input_ids: input 'input_ids' holds the value"),
        (["--mask-input", "token_type_ids"], "no input 'token_type_ids'"),
        (["--mask-input", "attention_mask", "--no-mask"], "contradict"),
    ],
)
def test_a_mask_input_that_does_not_fit_is_exit_2(
    tmp_path: Path,
    encoder: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    path, data = encoder
    out = tmp_path / "out"
    argv = ["optimize", str(path), "--data", str(data), *flags, "--out", str(out), "--time-budget", "30s"]
    assert run([*argv, "--cache-dir", str(tmp_path / "cache"), *FAST_FLAGS]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
