"""Search: the accuracy-aware search over candidates (passes x backends x runtime configs), its cache and recipes.

:func:`optimize` is the entry point (the CLI, the demo and the benchmarks call it); :mod:`.engine` holds the
search itself, :mod:`.candidates` what is tried, :mod:`.cache` the resumable on-disk cache, :mod:`.recipe`
replayable recipes and provenance, :mod:`.results` the report rows. Passes, ``nncf-int8`` included, come from
:mod:`honed.passes`'s registry.
"""

from honed.search.api import EXIT_BASELINE_ONLY, EXIT_IMPROVED, OptimizeResult, optimize
from honed.search.candidates import Candidate, Step
from honed.search.recipe import Recipe
from honed.units import parse_duration

__all__ = [
    "EXIT_BASELINE_ONLY",
    "EXIT_IMPROVED",
    "Candidate",
    "OptimizeResult",
    "Recipe",
    "Step",
    "optimize",
    "parse_duration",
]
