"""The public Python API: every name in ``honed.__all__`` resolves, and importing honed stays light."""

from __future__ import annotations

import subprocess
import sys

import honed


def test_every_exported_name_resolves() -> None:
    assert set(honed.__all__) == {"__version__", *honed._EXPORTS}
    for name in honed.__all__:
        assert getattr(honed, name) is not None


def test_import_does_not_load_onnxruntime() -> None:
    code = "import sys, honed, honed.errors; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
