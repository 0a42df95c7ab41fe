"""A fresh virtual environment holding only the bundle's requirements.txt (installed offline from the wheel folder
in ``HONED_EDGE_WHEELHOUSE``) runs ``selftest``, ``predict`` and ``serve``, for an ONNX Runtime bundle and an
OpenVINO IR bundle, and its answers equal ``honed serve``'s on the same model and the same inputs."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from honed.edge import EdgeManifest
from honed.edge.versus import infer_body, start_honed_serve
from honed.model.artifact import winner_file

WHEELHOUSE = os.environ.get("HONED_EDGE_WHEELHOUSE")
CLEAN = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

pytestmark = pytest.mark.skipif(
    not WHEELHOUSE, reason="HONED_EDGE_WHEELHOUSE (a folder of the pinned wheels) is not set; pip cannot fetch offline"
)


def _venv(bundle: Path, folder: Path) -> str:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True, timeout=300)
    python = str(folder / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELHOUSE)]
    subprocess.run([*pip, "-r", str(bundle / "requirements.txt")], check=True, capture_output=True, timeout=600)
    return python


def _infer(port: int, name: str, feeds: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", f"/v2/models/{name}/infer", body=infer_body(feeds))
        reply = conn.getresponse()
        payload = reply.read()
    finally:
        conn.close()
    assert reply.status == 200, payload
    return {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in json.loads(payload)["outputs"]}


@pytest.mark.parametrize(("bundle_fixture", "model_fixture"), [("bundle", "source"), ("ir_bundle", "ir_winner")])
def test_only_the_requirements_run_selftest_predict_and_serve_as_honed_serve_answers(
    request: pytest.FixtureRequest, tmp_path: Path, bundle_fixture: str, model_fixture: str
) -> None:
    bundle: Path = request.getfixturevalue(bundle_fixture)
    model: Path = request.getfixturevalue(model_fixture)
    model = winner_file(model) if model.is_dir() else model
    manifest = EdgeManifest.read(bundle)
    python = _venv(bundle, tmp_path / "v")
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True, env=CLEAN
    )
    names = {d["name"].lower() for d in json.loads(installed.stdout)}
    other = {"onnxruntime", "openvino"} - {manifest.session.backend}
    assert "honed" not in names and not names & other, names
    assert subprocess.run([python, "-c", "import honed"], capture_output=True, check=False, env=CLEAN).returncode != 0

    def runner(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        command = [python, "-B", "-m", "honed_edge", *args]
        return subprocess.run(command, cwd=bundle, capture_output=True, text=True, check=False, env=CLEAN, **kw)

    done = runner("selftest")
    assert done.returncode == 0 and done.stdout.startswith("selftest ok:"), done.stderr
    assert f"on {manifest.session.backend} " in done.stdout

    rng = np.random.default_rng(5)
    feeds = {
        t.name: rng.standard_normal([3 if d is None else d for d in t.shape]).astype(t.dtype)
        for t in manifest.model.inputs
    }
    np.savez(tmp_path / "in.npz", **feeds)
    done = runner("predict", "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz"))
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz") as archive:
        predicted = {name: archive[name] for name in archive.files}

    command = [python, "-B", "-m", "honed_edge", "serve", "--port", "0"]
    with ExitStack() as stack:
        process = stack.enter_context(
            subprocess.Popen(command, cwd=bundle, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLEAN)
        )
        stack.callback(process.kill)
        assert process.stdout is not None
        found = re.match(r"listening on http://127\.0\.0\.1:(\d+) ", process.stdout.readline())
        assert found is not None, process.stderr.read() if process.stderr else ""
        served = _infer(int(found.group(1)), manifest.name, feeds)
        honed_port = start_honed_serve(model, manifest.name, manifest.session.runtime_config(), tmp_path, stack)
        honed = _infer(honed_port, manifest.name, feeds)

    assert sorted(honed) == sorted(predicted) == sorted(served) == [t.name for t in manifest.model.outputs]
    for name, want in honed.items():
        np.testing.assert_array_equal(served[name], want)
        np.testing.assert_array_equal(predicted[name].astype(np.float32), want)
