"""The attention-mask input of an encoder, and which output positions the gate compares because of it.

An encoder fed padded batches (``attention_mask`` 0 at the padding) computes something at every padded
position, but nobody reads it: the gate must not fail a candidate for what it writes there.
:func:`choose_mask` finds the input (an integer input named like ``attention_mask``/``mask``, values 0/1,
shape [batch, seq] matching the leading axes of an output), or checks the one the user named; a
:class:`MaskSpec` says which input it is and how it was chosen, and gives the kept positions of a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from honed.errors import DataError, InvalidArgument

Array = np.ndarray[Any, Any]

SOURCES = ("auto", "--mask-input", "--no-mask")


@dataclass(frozen=True)
class MaskSpec:
    """``input`` is the mask input (None: masking turned off with ``--no-mask``); ``source`` how it was chosen."""

    input: str | None
    source: str = "auto"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InvalidArgument(f"mask source must be one of {', '.join(SOURCES)}; got {self.source!r}")

    def keep(self, feeds: Mapping[str, Array]) -> Array | None:
        """The [batch, seq] boolean positions to compare in this batch (None: every position)."""
        if self.input is None or self.input not in feeds:
            return None
        return np.asarray(feeds[self.input]) != 0

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaskSpec:
        value = data.get("input")
        return cls(str(value) if value is not None else None, str(data.get("source", "auto")))


def applies(keep: Array | None, output: Array) -> bool:
    """Whether ``output``'s leading axes are the mask's [batch, seq] (only such outputs are masked)."""
    return keep is not None and output.ndim >= 2 and tuple(output.shape[:2]) == tuple(keep.shape)


def _looks_like_mask(name: str) -> bool:
    return "mask" in name.lower()


def _misfit(
    name: str, batches: Iterable[Mapping[str, Array]], output_shapes: Mapping[str, tuple[int, ...]]
) -> str | None:
    """Why input ``name`` cannot be the attention mask of this data, or None when it can."""
    seen = False
    for feeds in batches:
        if name not in feeds:
            return f"the model has no input {name!r} (inputs: {', '.join(feeds)})"
        array = np.asarray(feeds[name])
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            return f"input {name!r} holds {array.dtype} values, not integer 0/1"
        if array.ndim != 2:
            return f"input {name!r} has shape {list(array.shape)}, not [batch, seq]"
        bad = array[(array != 0) & (array != 1)]
        if bad.size:
            return f"input {name!r} holds the value {bad.flat[0]}, not only 0 and 1"
        if not seen:
            seen = True
            if not any(len(s) >= 2 and tuple(s[:2]) == array.shape for s in output_shapes.values()):
                shapes = ", ".join(f"{n} {list(s)}" for n, s in output_shapes.items())
                return f"no output starts with input {name!r}'s shape {list(array.shape)} (outputs: {shapes})"
    return None if seen else "the eval data holds no samples"


def choose_mask(
    input_names: Iterable[str],
    batches: Callable[[], Iterable[Mapping[str, Array]]],
    output_shapes: Mapping[str, tuple[int, ...]],
    *,
    requested: str | None = None,
    disabled: bool = False,
) -> MaskSpec | None:
    """The mask the gate uses: ``requested`` (``--mask-input``, checked against the data), none with
    ``disabled`` (``--no-mask``), else the one input that fits, found by its name and values (None when none does).

    ``batches`` is a callable returning a fresh iterator over the eval batches.
    """
    if requested is not None and disabled:
        raise InvalidArgument("--mask-input and --no-mask contradict each other; give one of them")
    if disabled:
        return MaskSpec(None, "--no-mask")
    if requested is not None:
        why = _misfit(requested, batches(), output_shapes)
        if why is not None:
            raise DataError(f"--mask-input {requested}: {why}; name the attention-mask input or pass --no-mask")
        return MaskSpec(requested, "--mask-input")
    for name in input_names:
        if _looks_like_mask(name) and _misfit(name, batches(), output_shapes) is None:
            return MaskSpec(name, "auto")
    return None
