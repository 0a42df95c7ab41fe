"""Starting a bundle's runner the way a device would: a Python that cannot import honed.

``python -I -S`` skips site-packages processing, so honed's editable-install ``.pth`` file never runs; the folders
that hold numpy and the runtimes are put on ``sys.path`` by hand, and a meta-path finder makes any attempt to import
``honed`` (or another module named in ``EDGE_BLOCK``, such as the runtime the bundle does not use) fail loudly, so a
runner that reached for it would fail the test rather than quietly work.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy
import onnxruntime
import openvino

SITE = sorted({str(Path(m.__file__).parent.parent) for m in (numpy, onnxruntime, openvino)})

LAUNCH = """
import importlib.abc, json, runpy, sys

bundle, site, blocked = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"the bundle's runner imported {name}")
        return None

sys.meta_path.insert(0, Blocked())
sys.path[:0] = [bundle, *site]
sys.argv = ["honed_edge", *sys.argv[4:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


OTHER_RUNTIME = {"onnxruntime": "openvino", "openvino": "onnxruntime"}


def blocked_for(bundle: Path) -> list[str]:
    """honed, and the runtime the bundle's manifest does not name."""
    try:
        backend = json.loads((bundle / "manifest.json").read_text())["session"].get("backend", "onnxruntime")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ["honed"]  # a manifest a test broke: the runner refuses it before any runtime loads
    return ["honed", OTHER_RUNTIME.get(backend, "onnxruntime")]


def isolated(bundle: Path, *args: str) -> list[str]:
    blocked = json.dumps(blocked_for(bundle))
    return [sys.executable, "-I", "-S", "-B", "-c", LAUNCH, str(bundle), json.dumps(SITE), blocked, *args]


def run_isolated(bundle: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        isolated(bundle, *args), input=stdin, capture_output=True, text=True, timeout=300, check=False, cwd=bundle
    )


@contextmanager
def serving(bundle: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``honed_edge serve --port 0 ARGS`` started and listening; yields the process and its port, kills it after."""
    command = isolated(bundle, "serve", "--port", "0", *args)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()  # printed once the socket is bound and the model loaded
        found = re.match(r"listening on http://127\.0\.0\.1:(\d+) model \w+$", line.strip())
        if found is None:
            process.kill()
            raise AssertionError(f"the server did not start: {line!r} {process.stderr.read()!r}")
        try:
            yield process, int(found.group(1))
        finally:
            if process.poll() is None:
                process.kill()
