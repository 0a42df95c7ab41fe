"""The masked gate on a tiny encoder with padding: what the padded positions hold does not count, the rest does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from honed.errors import DataError, InvalidArgument
from honed.evaluate import AccuracyGate, Comparison, MaskSpec, ReferenceOutputs, choose_mask
from honed.runtime import create_session
from tests.graphs import padded_batch, tiny_encoder

Array = np.ndarray[Any, Any]


@pytest.fixture
def data() -> dict[str, Array]:
    return padded_batch(24)


def _batches(data: dict[str, Array], size: int = 8) -> Iterator[dict[str, Array]]:
    n = len(next(iter(data.values())))
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in data.items()}


@pytest.fixture
def reference(tmp_path: Path, data: dict[str, Array]) -> ReferenceOutputs:
    session = create_session(tiny_encoder(tmp_path / "original.onnx"))
    return ReferenceOutputs.compute(session, lambda: _batches(data), tmp_path / "reference")


@pytest.mark.parametrize(
    ("metric", "bound"), [("cosine", {"min": 0.99}), ("pooled-cosine", {"min": 0.99}), ("rel-error", {"max": 0.01})]
)
def test_padded_positions_do_not_count_real_ones_do(
    tmp_path: Path, reference: ReferenceOutputs, metric: str, bound: dict[str, float]
) -> None:
    gate = AccuracyGate(metric, **bound)
    masked = Comparison(gate, MaskSpec("attention_mask"))
    unmasked = Comparison(gate)
    wild_padding = create_session(tiny_encoder(tmp_path / "pad.onnx", pad_noise=1e4))
    changed = create_session(tiny_encoder(tmp_path / "real.onnx", real_noise=3.0))

    assert masked.judge(wild_padding, reference) is None
    assert unmasked.judge(wild_padding, reference) is not None  # the same model, judged on every position
    assert masked.judge(changed, reference) is not None
    result = masked.evaluate(changed, reference)
    assert result.value(metric) is not None


def test_masked_comparison_keeps_exact_values_for_the_real_positions(
    tmp_path: Path, reference: ReferenceOutputs
) -> None:
    wild_padding = create_session(tiny_encoder(tmp_path / "pad.onnx", pad_noise=1e4))
    result = Comparison(AccuracyGate("cosine", min=0.99), MaskSpec("attention_mask")).evaluate(wild_padding, reference)
    summary = result.outputs["last_hidden_state"]
    assert summary["cosine_min"] == pytest.approx(1.0)
    assert summary["max_abs_error"] == pytest.approx(0.0, abs=1e-5)
    assert summary["pooled_cosine_min"] == pytest.approx(1.0)
    unmasked = Comparison(AccuracyGate("cosine", min=0.99)).evaluate(wild_padding, reference)
    assert unmasked.outputs["last_hidden_state"]["max_abs_error"] > 1e3


def test_sensitivity_error_uses_the_same_masked_comparison(tmp_path: Path, data: dict[str, Array]) -> None:
    original = create_session(tiny_encoder(tmp_path / "original.onnx"))
    wild = create_session(tiny_encoder(tmp_path / "pad.onnx", pad_noise=1e4))
    comparison = Comparison(AccuracyGate("rel-error", max=0.01), MaskSpec("attention_mask"))
    want, got = original.run(data), wild.run(data)
    assert comparison.relative_error(want, got, data) == pytest.approx(0.0, abs=1e-6)
    assert Comparison(AccuracyGate("rel-error", max=0.01)).relative_error(want, got, data) > 10


def _choose(data: dict[str, Array], **kwargs: Any) -> MaskSpec | None:
    shapes = {"last_hidden_state": (8, 6, 8)}
    return choose_mask(list(data), lambda: _batches(data), shapes, **kwargs)


def test_mask_found_named_or_turned_off(data: dict[str, Array]) -> None:
    assert _choose(data) == MaskSpec("attention_mask", "auto")
    assert _choose(data, requested="attention_mask") == MaskSpec("attention_mask", "--mask-input")
    assert _choose(data, disabled=True) == MaskSpec(None, "--no-mask")
    # values other than 0/1 are not a mask: nothing is found automatically
    not_binary = dict(data, attention_mask=data["attention_mask"] * 2)
    assert _choose(not_binary) is None
    # a mask whose shape no output starts with is not this model's mask
    assert choose_mask(list(data), lambda: _batches(data), {"pooled": (8, 8)}) is None


@pytest.mark.parametrize(
    ("requested", "change", "message"),
    [
        ("attn", {}, "no input 'attn'"),
        ("input_ids", {}, "not only 0 and 1"),
        ("attention_mask", {"attention_mask": "float"}, "not integer 0/1"),
        ("attention_mask", {"attention_mask": "3d"}, r"not \[batch, seq\]"),
    ],
)
def test_a_mask_input_that_does_not_fit_is_refused(
    data: dict[str, Array], requested: str, change: dict[str, str], message: str
) -> None:
    if change.get("attention_mask") == "float":
        data = dict(data, attention_mask=data["attention_mask"].astype(np.float32))
    if change.get("attention_mask") == "3d":
        data = dict(data, attention_mask=data["attention_mask"][:, :, None])
    with pytest.raises(DataError, match=message):
        _choose(data, requested=requested)


def test_mask_input_and_no_mask_contradict(data: dict[str, Array]) -> None:
    with pytest.raises(InvalidArgument, match="contradict"):
        _choose(data, requested="attention_mask", disabled=True)
