"""Edge bundles: a model, one runtime and a few hundred lines of standard-library code that start fast and can be
checked offline (``honed export edge``).

    bundle.py        export_edge: the bundle writer (sample, reference, format choice, manifest, runner)
    source.py        what is exported: an optimize out/, a model file, a registry version
    format.py        ONNX or ONNX Runtime's ORT format, whichever opens faster here
    manifest.py      EdgeManifest, manifest.json (schema honed.edge/1)
    cost.py          BundleCost, cost.json: sizes, cold start, peak RSS, steady latency
    runner_files.py  the runner's shipped sources and how honed starts it
    runner/honed_edge/  the runner copied into every bundle (imports no honed code)
"""

from honed.edge.bundle import EdgeExport, export_edge, pinned_versions
from honed.edge.cost import COST_FILE, COST_SCHEMA, BundleCost, EnvironmentSize
from honed.edge.manifest import EDGE_SCHEMA, MANIFEST_FILE, EdgeManifest, SessionSettings

__all__ = [
    "COST_FILE",
    "COST_SCHEMA",
    "EDGE_SCHEMA",
    "MANIFEST_FILE",
    "BundleCost",
    "EdgeExport",
    "EdgeManifest",
    "EnvironmentSize",
    "SessionSettings",
    "export_edge",
    "pinned_versions",
]
