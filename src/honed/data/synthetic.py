"""Synthetic inputs built from a model's input specs, for benchmarking and for runs without user data.

Values respect each input's dtype. Integer inputs get a sane range: names that look like attention masks
are all ones, token-type/segment ids all zeros, and any other integer input draws from ``[0, int_high)``
(token ids below a vocabulary size, byte values, class indices).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from honed.errors import DataError
from honed.model.spec import TensorSpec

DEFAULT_INT_HIGH = 256


def synthetic_feeds(
    specs: list[TensorSpec],
    shapes: Mapping[str, tuple[int, ...]],
    *,
    seed: int = 0,
    int_high: int | None = None,
) -> dict[str, np.ndarray[Any, Any]]:
    """One array per input with the given concrete shapes; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray[Any, Any]] = {}
    for spec in specs:
        if spec.name not in shapes:
            raise DataError(f"no shape for input {spec.name!r}; give one with --shape {spec.name}=DIMxDIM...")
        feeds[spec.name] = _values(spec, shapes[spec.name], rng, int_high)
    return feeds


def _values(
    spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator, int_high: int | None
) -> np.ndarray[Any, Any]:
    dtype = spec.dtype
    lowered = spec.name.lower()
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        if "mask" in lowered:
            return np.ones(shape, dtype=dtype)
        if "token_type" in lowered or "segment" in lowered:
            return np.zeros(shape, dtype=dtype)
        high = int_high or DEFAULT_INT_HIGH
        info = np.iinfo(dtype)
        high = min(high, int(info.max) + 1)
        return rng.integers(max(0, int(info.min)), high, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(size=shape).astype(dtype)
    if dtype.kind in "OUS":
        return np.full(shape, "honed", dtype=object)
    raise DataError(f"cannot make synthetic values for input {spec.name!r} of type {spec.type_name}")
