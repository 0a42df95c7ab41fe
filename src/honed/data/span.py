"""How much of a dataset one read covers: the check every :class:`~honed.data.Dataset` makes of its arguments."""

from __future__ import annotations

from honed.errors import InvalidArgument


def samples_to_read(num_samples: int, batch_size: int, limit: int | None) -> int:
    """How many samples a read in batches of ``batch_size`` covers: all ``num_samples``, or the first ``limit``."""
    if batch_size < 1:
        raise InvalidArgument(f"batch size must be >= 1, got {batch_size}")
    return num_samples if limit is None else min(limit, num_samples)
