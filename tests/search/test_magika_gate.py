"""The accuracy gate on a real model: full static INT8 breaks Magika, and the search must reject it."""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from honed.search import optimize

magika = pytest.importorskip("magika")
MODEL = Path(magika.__file__).parent / "models" / "standard_v3_3" / "model.onnx"


def _features(path: Path) -> np.ndarray[Any, Any]:
    """Magika's input: first and last 1024 bytes (whitespace stripped), padded with 256."""
    data = path.read_bytes()
    head, tail = data.lstrip()[:1024], data.rstrip()[-1024:]
    beg = list(head) + [256] * (1024 - len(head))
    end = [256] * (1024 - len(tail)) + list(tail)
    return np.array(beg + end, dtype=np.int32)


def _real_files(count: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".py", ".pyc", ".txt", ".json", ".so"})
    step = max(len(files) // count, 1)
    return files[::step][:count]


def test_gate_rejects_full_static_int8_on_magika(tmp_path: Path) -> None:
    features = np.stack([_features(p) for p in _real_files(40)])
    np.savez(tmp_path / "calib.npz", bytes=features[:16])
    np.savez(tmp_path / "eval.npz", bytes=features[16:])
    result = optimize(
        MODEL,
        out=tmp_path / "out",
        data=tmp_path / "calib.npz",
        eval_data=tmp_path / "eval.npz",
        metric="agreement",
        minimum=0.9,
        time_budget="60s",
        passes=["int8-static"],
        backends=["onnxruntime"],
        tune_runtime=False,
        evaluate_slower=True,
        measure_s=0.05,
        final_rounds=2,
        cache_dir=tmp_path / "cache",
    )
    rows = result.report["candidates"]
    full_int8 = [
        r
        for r in rows
        if r["passes"] and r["passes"][0]["name"] == "int8-static" and not r["passes"][0]["params"]["nodes_to_exclude"]
    ]
    assert full_int8, rows
    judged = [r for r in full_int8 if r["status"] in ("rejected", "failed")]
    assert judged == full_int8  # none of the full-INT8 variants is accepted
    rejected = [r for r in full_int8 if r["status"] == "rejected"]
    assert rejected, full_int8  # at least one ran and was judged on fidelity
    for r in rejected:
        assert r["metric_value"] < 0.9 and "agreement" in r["reason"]
    assert result.report["winner"]["passes"] == [] or result.report["winner"]["passes"][0]["params"]["nodes_to_exclude"]
