"""Passes: model-to-model transformations (graph optimization, quantization, fp16, pruning) and their registry.

Use :func:`get_pass` / :func:`all_passes`; each pass is a :class:`Pass` with typed, described parameters
(:class:`Param`). The built-in passes (``fp16``, ``graph``, ``int8-dynamic``, ``int8-static``, ``nncf-int8``,
``prune``, ``transformer-fusion``) are listed in :mod:`honed.passes.registry` with what each needs; a pass's
module is imported when the pass is first asked for, so importing this package loads no optional library.
:func:`sensitive_layer_fallback` keeps the nodes that hurt accuracy most out of static INT8 until a caller's
accuracy gate accepts the model; :mod:`honed.passes.checks` is the contract battery every pass passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from honed.passes.base import AUTO, CalibrationSource, HardwareLike, Param, Pass, PassContext, PassError
from honed.passes.registry import PassSpec, all_passes, get_pass, pass_names, pass_spec, pass_specs, register_pass

if TYPE_CHECKING:
    from honed.passes.sensitivity import FallbackResult, LayerError, rank_sensitivity, sensitive_layer_fallback

__all__ = [
    "AUTO",
    "CalibrationSource",
    "FallbackResult",
    "HardwareLike",
    "LayerError",
    "Param",
    "Pass",
    "PassContext",
    "PassError",
    "PassSpec",
    "all_passes",
    "get_pass",
    "pass_names",
    "pass_spec",
    "pass_specs",
    "rank_sensitivity",
    "register_pass",
    "sensitive_layer_fallback",
]

_SENSITIVITY = frozenset({"FallbackResult", "LayerError", "rank_sensitivity", "sensitive_layer_fallback"})


def __getattr__(name: str) -> Any:
    # the fallback imports the INT8 passes; load it only when it is used
    if name in _SENSITIVITY:
        from honed.passes import sensitivity

        return getattr(sensitivity, name)
    raise AttributeError(f"module 'honed.passes' has no attribute {name!r}")
