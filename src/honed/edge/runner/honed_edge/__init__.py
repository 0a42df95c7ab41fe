"""honed_edge: the runner inside an edge bundle.

It imports nothing but the standard library, numpy and onnxruntime, so the bundle runs in an environment
holding only its ``requirements.txt``. ``python -m honed_edge selftest | predict | serve | info | bench``.

    bundle.py    reads manifest.json (schema ``honed.edge/1``) and checks every file's sha256
    session.py   builds the one ONNX Runtime session from the manifest's recorded options
    tensors.py   checks inputs against the model (names, dtypes, shapes) and the V2 JSON tensor codec
    server.py    the KServe V2 REST subset on http.server
    __main__.py  the commands
"""

from .bundle import Bundle, BundleError, open_bundle

__all__ = ["Bundle", "BundleError", "open_bundle"]
