"""On the real Magika model: full static INT8 breaks top-1 agreement; the sensitive-layer fallback recovers it."""

from __future__ import annotations

import math
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from honed.model import save_model
from honed.passes import PassContext, get_pass
from honed.passes.sensitivity import sensitive_layer_fallback
from honed.runtime import create_session

magika = pytest.importorskip("magika")
MODEL = Path(magika.__file__).parent / "models" / "standard_v3_3" / "model.onnx"


def _features(path: Path) -> np.ndarray[Any, Any]:
    """Magika's input: 1024 bytes from the start (whitespace-stripped) and 1024 from the end, padded with 256."""
    data = path.read_bytes()
    beg = data[:4096].lstrip()[:1024]
    end = data[-4096:].rstrip()[-1024:]
    out = np.full(2048, 256, dtype=np.int32)
    out[: len(beg)] = np.frombuffer(beg, dtype=np.uint8)
    if end:
        out[2048 - len(end) :] = np.frombuffer(end, dtype=np.uint8)
    return out


def _real_files(count: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 64)
    rng = np.random.default_rng(0)
    return [files[i] for i in sorted(rng.choice(len(files), count, replace=False))]


@pytest.mark.e2e
def test_fallback_recovers_magika_int8(tmp_path: Path) -> None:
    model = onnx.load(str(MODEL))
    features = np.stack([_features(p) for p in _real_files(192)])
    calib, evaluation = features[:64], features[64:]

    def source() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        for i in range(0, len(calib), 16):
            yield {"bytes": calib[i : i + 16]}

    reference = create_session(save_model(model, tmp_path / "fp32.onnx")).run({"bytes": evaluation})
    labels = reference["target_label"].argmax(axis=1)

    def agreement(candidate: onnx.ModelProto) -> float:
        session = create_session(save_model(candidate, tmp_path / "candidate.onnx"))
        got = session.run({"bytes": evaluation})["target_label"]
        return float((got.argmax(axis=1) == labels).mean())

    ctx = PassContext(calibration=source, work_dir=tmp_path / "work")
    full = get_pass("int8-static").run(model, {}, ctx)
    assert agreement(full) < 0.9, "full per-tensor static INT8 is known to break Magika"

    result = sensitive_layer_fallback(model, {}, ctx, accept=lambda m: agreement(m) >= 0.99, batches=1)

    assert result.accepted
    assert agreement(result.model) >= 0.99
    # one ranking pass, then a binary search: a bounded number of judged models, whatever the node count
    assert result.tried <= 1 + math.ceil(math.log2(len(result.ranking))) + 1
    assert len(result.excluded) < len(result.ranking), "part of the model must stay quantized"
