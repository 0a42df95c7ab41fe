"""Fidelity metrics as pure numpy functions on one batch of reference and candidate outputs.

Each function takes the reference (original model) and candidate arrays of the same shape, with the batch
on axis 0, and returns plain Python numbers. "Rows" are the samples a metric is averaged over: for
classification-like metrics (agreement, accuracy) every position of every leading axis is a row of class
scores along the last axis; for cosine and relative error a row is one batch item, flattened.
Streaming over many batches is :mod:`honed.evaluate.fidelity`'s job; these functions hold no state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

_TINY = 1e-12


def _as_f64(a: Array) -> Array:
    return np.asarray(a, dtype=np.float64)


def _class_rows(a: Array) -> Array:
    """Scores as [rows, classes]: every leading position is one prediction over the last axis."""
    x = _as_f64(a)
    if x.ndim < 2:
        return x.reshape(-1, 1)
    return x.reshape(-1, x.shape[-1])


def _item_rows(a: Array) -> Array:
    """One flattened row per batch item."""
    x = _as_f64(a)
    if x.ndim == 0:
        return x.reshape(1, 1)
    return x.reshape(x.shape[0], -1)


def nonfinite_count(a: Array) -> int:
    """How many elements are NaN or +-Inf (0 for integer and boolean outputs)."""
    x = np.asarray(a)
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.complexfloating):
        return 0
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def top1_matches(reference: Array, candidate: Array) -> tuple[int, int]:
    """(rows whose arg-max class agrees, rows) over the last axis."""
    r = _class_rows(reference).argmax(axis=1)
    c = _class_rows(candidate).argmax(axis=1)
    return int(np.count_nonzero(r == c)), int(r.size)


def top1_agreement(reference: Array, candidate: Array) -> float:
    """Fraction of rows whose top-1 class is the same in both (1.0 for no rows)."""
    same, rows = top1_matches(reference, candidate)
    return same / rows if rows else 1.0


def label_matches(scores: Array, labels: Array) -> tuple[int, int]:
    """(rows whose arg-max equals the integer label, rows); ``labels`` has one entry per row."""
    predicted = _class_rows(scores).argmax(axis=1)
    truth = np.asarray(labels).reshape(-1)
    if truth.size != predicted.size:
        raise ValueError(f"{truth.size} labels for {predicted.size} predictions")
    return int(np.count_nonzero(predicted == truth)), int(predicted.size)


def cosine_per_item(reference: Array, candidate: Array) -> Array:
    """Cosine similarity of each flattened batch item; 1.0 where both are all zeros, 0.0 where only one is."""
    r = _item_rows(reference)
    c = _item_rows(candidate)
    nr = np.linalg.norm(r, axis=1)
    nc = np.linalg.norm(c, axis=1)
    dot = np.einsum("ij,ij->i", r, c)
    both_zero = (nr <= _TINY) & (nc <= _TINY)
    denom = np.where(both_zero, 1.0, np.maximum(nr * nc, _TINY))
    cos = np.where(both_zero, 1.0, dot / denom)
    return np.asarray(np.clip(cos, -1.0, 1.0))


def abs_errors(reference: Array, candidate: Array) -> tuple[float, float, int]:
    """(max absolute error, sum of absolute errors, element count)."""
    diff = np.abs(_as_f64(candidate) - _as_f64(reference))
    if diff.size == 0:
        return 0.0, 0.0, 0
    return float(diff.max()), float(diff.sum()), int(diff.size)


def _norm_ratio(num: Array, den: Array) -> Array:
    """``num / den`` where ``den`` is not ~0; ``num`` (the absolute error) where it is."""
    return np.asarray(np.where(den > _TINY, num / np.maximum(den, _TINY), num))


def relative_error_per_item(reference: Array, candidate: Array) -> Array:
    """||candidate - reference|| / ||reference|| per flattened batch item (L2 norms).

    A norm-relative error, so elements near zero do not blow it up; an all-zero reference item gives the
    candidate's own norm (its absolute error).
    """
    r = _item_rows(reference)
    c = _item_rows(candidate)
    return _norm_ratio(np.linalg.norm(c - r, axis=1), np.linalg.norm(r, axis=1))


def relative_error(reference: Array, candidate: Array) -> float:
    """||candidate - reference|| / ||reference|| over the whole array (L2 norms), as in
    :func:`relative_error_per_item`; +inf when the candidate holds NaN or Inf."""
    if nonfinite_count(candidate):
        return math.inf
    r = _as_f64(reference).reshape(-1)
    c = _as_f64(candidate).reshape(-1)
    return float(_norm_ratio(np.asarray([np.linalg.norm(c - r)]), np.asarray([np.linalg.norm(r)]))[0])


def mean_pool(a: Array, keep: Array | None = None) -> Array:
    """Mean over axis 1 (the sequence) of a [batch, seq, ...] output, over the kept positions only.

    ``keep`` is a [batch, seq] 0/1 mask (an attention mask); an item with no kept position pools to zeros.
    The result is [batch, features] (trailing axes flattened).
    """
    x = _as_f64(a)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    weights = np.ones(x.shape[:2]) if keep is None else np.asarray(keep, dtype=np.float64)
    total = np.einsum("bs,bsf->bf", weights, x)
    count = weights.sum(axis=1, keepdims=True)
    return np.asarray(total / np.maximum(count, 1.0))


def pooled_cosine_per_item(reference: Array, candidate: Array, keep: Array | None = None) -> Array:
    """Cosine of the mean-pooled, L2-normalised embeddings of each item of [batch, seq, ...] outputs.

    What a sentence-embedding user compares: the tokens the mask keeps are averaged, the mean is
    normalised to unit length, and the two unit vectors' dot product is the item's cosine.
    """
    r = mean_pool(reference, keep)
    c = mean_pool(candidate, keep)
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), _TINY)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), _TINY)
    return cosine_per_item(r, c)


def signal_and_noise(reference: Array, candidate: Array) -> tuple[float, float]:
    """(sum of reference squared, sum of squared error): the two sums SQNR is built from."""
    r = _as_f64(reference)
    return float(np.sum(r * r)), float(np.sum((_as_f64(candidate) - r) ** 2))


def sqnr_db(signal: float, noise: float) -> float:
    """Signal-to-quantization-noise ratio in dB; +inf when there is no noise at all."""
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def iou_counts(reference: Array, candidate: Array, threshold: float = 0.3) -> tuple[int, int]:
    """(intersection, union) of the elements above ``threshold`` in each map."""
    r = _as_f64(reference) > threshold
    c = _as_f64(candidate) > threshold
    return int(np.count_nonzero(r & c)), int(np.count_nonzero(r | c))


def iou(reference: Array, candidate: Array, threshold: float = 0.3) -> float:
    """Intersection over union of the thresholded maps; 1.0 when neither has any element above it."""
    inter, union = iou_counts(reference, candidate, threshold)
    return inter / union if union else 1.0
