"""pooled-cosine: mean-pool over the kept positions, L2-normalise, cosine per sample; the gate reads the mean."""

from __future__ import annotations

import numpy as np
import pytest

from honed.errors import InvalidArgument
from honed.evaluate import AccuracyGate, FidelityAccumulator, choose_metric
from honed.evaluate.metrics import mean_pool, pooled_cosine_per_item


def test_mean_pool_averages_only_the_kept_positions() -> None:
    x = np.array([[[1.0, 0.0], [3.0, 2.0], [100.0, -100.0]]])  # [1, 3, 2]; the last position is padding
    keep = np.array([[1, 1, 0]])
    assert mean_pool(x, keep).tolist() == [[2.0, 1.0]]
    assert mean_pool(x)[0].tolist() == pytest.approx([104 / 3, -98 / 3])
    # an item with no kept position pools to zeros rather than dividing by zero
    assert mean_pool(x, np.array([[0, 0, 0]])).tolist() == [[0.0, 0.0]]


def test_pooled_cosine_worked_by_hand() -> None:
    reference = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])  # pooled: (1, 0) and (.5, .5)
    candidate = np.array([[[5.0, 0.0], [3.0, 0.0]], [[0.0, 2.0], [0.0, 2.0]]])  # pooled: (4, 0) and (0, 2)
    cos = pooled_cosine_per_item(reference, candidate)
    assert cos.tolist() == pytest.approx([1.0, 1 / np.sqrt(2)])  # a scale does not matter; 45 degrees does
    # the second sample's first position is padding: only (0, 1) vs (0, 2) is compared
    keep = np.array([[1, 1], [0, 1]])
    assert pooled_cosine_per_item(reference, candidate, keep).tolist() == pytest.approx([1.0, 1.0])


def test_pooled_cosine_is_the_gate_value_and_min_is_reported() -> None:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((4, 5, 3))
    candidate = reference.copy()
    candidate[2] = -candidate[2]  # one sample pooled in exactly the opposite direction
    acc = FidelityAccumulator(["h"])
    acc.update({"h": reference}, {"h": candidate})
    result = acc.result()
    assert result.outputs["h"]["pooled_cosine_min"] == pytest.approx(-1.0)
    assert result.value("pooled-cosine") == pytest.approx((1 + 1 - 1 + 1) / 4)
    assert AccuracyGate("pooled-cosine", min=0.99).check(result) is not None
    same = FidelityAccumulator(["h"])
    same.update({"h": reference}, {"h": reference * 2.0})
    assert AccuracyGate("pooled-cosine", min=0.99).check(same.result()) is None


def test_pooled_cosine_needs_a_sequence_output() -> None:
    acc = FidelityAccumulator(["probs"])
    probs = np.full((4, 3), 1 / 3)
    acc.update({"probs": probs}, {"probs": probs})
    result = acc.result()
    assert result.value("pooled-cosine") is None
    assert "does not apply" in str(AccuracyGate("pooled-cosine", min=0.99).check(result))
    with pytest.raises(InvalidArgument, match=r"\[batch, seq, hidden\]"):
        choose_metric("pooled-cosine", {"probs": (4, 3)})
    assert choose_metric("pooled-cosine", {"h": (4, 5, 3)})[0] == "pooled-cosine"
