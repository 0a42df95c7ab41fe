"""Passes: model-to-model transformations (graph optimization, quantization, fp16, pruning) and their registry.

Use :func:`get_pass` / :func:`all_passes`; each pass is a :class:`Pass` with typed, described parameters
(:class:`Param`). Importing this package registers the built-in passes: ``graph``, ``transformer-fusion``,
``int8-dynamic``, ``int8-static``, ``fp16`` and ``prune``. :func:`sensitive_layer_fallback` keeps the nodes that
hurt accuracy most out of static INT8 until a caller's accuracy gate accepts the model.
"""

from honed.passes.base import (
    AUTO,
    CalibrationSource,
    HardwareLike,
    Param,
    Pass,
    PassContext,
    PassError,
    all_passes,
    get_pass,
    pass_names,
)

__all__ = [
    "AUTO",
    "CalibrationSource",
    "HardwareLike",
    "Param",
    "Pass",
    "PassContext",
    "PassError",
    "all_passes",
    "get_pass",
    "pass_names",
]

# the built-in passes register themselves on import
from honed.passes import fp16, graph, int8_dynamic, int8_static, prune, transformer_fusion  # noqa: F401
from honed.passes.sensitivity import FallbackResult, LayerError, rank_sensitivity, sensitive_layer_fallback

__all__ += ["FallbackResult", "LayerError", "rank_sensitivity", "sensitive_layer_fallback"]
