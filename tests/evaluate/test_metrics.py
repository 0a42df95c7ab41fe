"""Metric functions against values worked out by hand, and the gate's decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from honed.errors import InvalidArgument
from honed.evaluate import AccuracyGate, FidelityAccumulator, FidelityResult, choose_metric, metrics


def test_top1_agreement_counts_rows_over_last_axis() -> None:
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    cand = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.9, 0.1]])
    assert metrics.top1_agreement(ref, cand) == 0.75


def test_cosine_per_item_hand_values() -> None:
    ref = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    cand = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(metrics.cosine_per_item(ref, cand), [0.0, 1.0, 1.0, 0.0])


def test_abs_and_relative_error() -> None:
    ref = np.array([[3.0, 4.0]])
    cand = np.array([[3.0, 5.0]])
    assert metrics.abs_errors(ref, cand) == (1.0, 1.0, 2)
    # ||(0, 1)|| / ||(3, 4)|| = 1/5
    np.testing.assert_allclose(metrics.relative_error_per_item(ref, cand), [0.2])


def test_sqnr_db() -> None:
    signal, noise = metrics.signal_and_noise(np.array([3.0, 4.0]), np.array([3.0, 4.5]))
    assert (signal, noise) == (25.0, 0.25)
    assert metrics.sqnr_db(signal, noise) == pytest.approx(20.0)
    assert metrics.sqnr_db(1.0, 0.0) == math.inf


def test_iou_thresholds_at_point_three() -> None:
    ref = np.array([0.2, 0.4, 0.9, 0.5])
    cand = np.array([0.35, 0.1, 0.8, 0.6])
    # ref > 0.3: {1, 2, 3}; cand > 0.3: {0, 2, 3}; intersection 2, union 4
    assert metrics.iou_counts(ref, cand) == (2, 4)
    assert metrics.iou(ref, cand) == 0.5
    assert metrics.iou(np.zeros(3), np.zeros(3)) == 1.0


def test_nonfinite_and_labels() -> None:
    assert metrics.nonfinite_count(np.array([1.0, np.nan, np.inf])) == 2
    assert metrics.nonfinite_count(np.array([1, 2])) == 0
    assert metrics.label_matches(np.array([[0.1, 0.9], [0.7, 0.3]]), np.array([1, 1])) == (1, 2)


def test_accumulator_over_two_batches_matches_whole() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(10, 5)).astype(np.float32)
    cand = ref + rng.normal(scale=0.3, size=ref.shape).astype(np.float32)
    acc = FidelityAccumulator(["y"])
    acc.update({"y": ref[:4]}, {"y": cand[:4]}, np.zeros(4, dtype=np.int64))
    acc.update({"y": ref[4:]}, {"y": cand[4:]}, np.zeros(6, dtype=np.int64))
    result = acc.result()
    out = result.outputs["y"]
    assert result.samples == 10
    assert out["agreement"] == pytest.approx(metrics.top1_agreement(ref, cand))
    assert out["cosine_mean"] == pytest.approx(float(metrics.cosine_per_item(ref, cand).mean()))
    assert out["cosine_min"] == pytest.approx(float(metrics.cosine_per_item(ref, cand).min()))
    assert result.accuracy == pytest.approx(float(np.mean(cand.argmax(1) == 0)))
    assert FidelityResult.from_dict(result.to_dict()) == result


def test_gate_rejects_nan_and_out_of_bound() -> None:
    gate = AccuracyGate.with_defaults("agreement", None, None)
    assert gate.min == 0.99
    ref = np.eye(4)
    good = FidelityAccumulator(["y"])
    good.update({"y": ref}, {"y": ref * 2})
    assert gate.check(good.result()) is None
    flipped = FidelityAccumulator(["y"])
    flipped.update({"y": ref}, {"y": ref[::-1].copy()})
    assert gate.check(flipped.result()) == "agreement 0 < 0.99"
    nan = FidelityAccumulator(["y"])
    nan.update({"y": ref}, {"y": np.where(ref > 0, np.nan, 0.0)})
    reason = gate.check(nan.result())
    assert reason is not None and "NaN" in reason
    assert AccuracyGate("rel-error", max=0.1).check(good.result()) is not None  # rel error of 2x is 1.0


def test_choose_metric_auto_says_why() -> None:
    assert choose_metric("auto", {"probs": (8, 214)})[0] == "agreement"
    metric, why = choose_metric("auto", {"emb": (8, 128, 384)})
    assert metric == "cosine" and "not class scores" in why
    assert choose_metric("auto", {"probs": (8, 3)}, has_labels=True)[0] == "accuracy"
    with pytest.raises(InvalidArgument, match="--labels"):
        choose_metric("accuracy", {"probs": (8, 3)})
    with pytest.raises(InvalidArgument):
        AccuracyGate("cosine", min=0.9, max=0.5)
