"""honed_edge: the runner inside an edge bundle.

It imports nothing but the standard library, numpy and the bundle's one runtime (onnxruntime or openvino), so
the bundle runs in an environment holding only its ``requirements.txt``.
``python -m honed_edge selftest | predict | serve | info | bench``.

    bundle.py    reads manifest.json (schema ``honed.edge/1``) and checks every file's sha256
    session.py   the model on the manifest's runtime, inputs checked (names, dtypes, shapes) before it runs
    ort_engine.py  ONNX Runtime (.onnx, .ort) with the recorded session options
    ov_engine.py   OpenVINO (IR) compiled with the recorded properties (precision hint, threads)
    tensors.py   .npz files and the V2 JSON and binary tensor codecs
    server.py    the KServe V2 REST subset on http.server
    __main__.py  the commands
"""

from .bundle import Bundle, BundleError, open_bundle

__all__ = ["Bundle", "BundleError", "open_bundle"]
