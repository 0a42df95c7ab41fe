"""MLflow both ways against a real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts in a temporary
folder): a registered ONNX model is optimized by alias and written back as a new version, whose pyfunc answers
equal honed's; other flavours, missing aliases and versions and an unreachable server are refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from honed.cli.main import run
from honed.errors import InvalidArgument
from tests.graphs import matmul_model

pytest.importorskip("mlflow", reason="MLflow both ways needs the mlflow package (pip install 'honed[mlflow]')")

K, N = 16, 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server and model registry, stopped afterwards."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art")]
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(args, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # its first start migrates the SQLite schema, slow on a busy machine
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not become healthy: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        _stop(proc, group=True)
        log.close()


def _stop(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after 5 s; ``group``: to the process group the server's workers share."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from honed.intake.mlflow import set_tracking_uri

    monkeypatch.setenv("HONED_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    set_tracking_uri(None)  # --mlflow-uri holds for the process, as it does for one CLI invocation


def _client(url: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=url)


def _log(url: str, log: Any) -> str:
    """Run ``log()`` in a fresh MLflow run on ``url``, its warnings and output kept out of the test's."""
    import mlflow

    from honed.intake._quiet import quiet_converters

    mlflow.set_tracking_uri(url)
    with quiet_converters(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.set_experiment("tests")
        with mlflow.start_run():
            info = log()
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def scorer(server: str, tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    """``scorer`` version 1 (an ONNX MLP), aliased ``prod``."""
    import mlflow

    proto = onnx.load(str(matmul_model(tmp_path_factory.mktemp("scorer") / "m.onnx", k=K, n=N)))
    version = _log(server, lambda: mlflow.onnx.log_model(proto, name="model", registered_model_name="scorer"))
    assert version == "1"
    _client(server).set_registered_model_alias("scorer", "prod", "1")
    return proto


@pytest.fixture(scope="module")
def sklearn_model(server: str) -> str:
    """``skl`` version 1: a fitted scikit-learn estimator in MLflow's sklearn flavour."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    estimator = LogisticRegression().fit(rng.standard_normal((20, 3)), np.arange(20) % 2)
    return _log(
        server,
        lambda: mlflow.sklearn.log_model(
            estimator, name="model", registered_model_name="skl", pip_requirements=[], serialization_format="pickle"
        ),
    )


def _bad(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command expecting bad input: exit 2 and one line on stderr; that line."""
    assert run(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("honed: error: "), lines
    return lines[0]


def test_optimize_by_alias_writes_back_a_version_pyfunc_runs_like_honed(
    server: str, scorer: onnx.ModelProto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    import onnxruntime as ort

    out, registry = tmp_path / "out", f"sqlite:///{tmp_path / 'registry.db'}"
    args = ["optimize", "models:/scorer@prod", "--time-budget", "20s", "--out", str(out), "--no-cache"]
    args += ["--measure", "0.2", "--rounds", "1", "--passes", "graph", "--to-mlflow", "scorer", "--mlflow-uri", server]
    assert run([*args, "--register", "scorer", "--registry", registry]) in (0, 3)
    err = capsys.readouterr().err
    assert "logged models:/scorer/2 to MLflow" in err

    client = _client(server)
    version = client.get_model_version("scorer", "2")
    assert version.tags["honed.source"] == "models:/scorer/1"
    assert version.tags["honed.source_uri"] == "models:/scorer@prod"
    assert version.tags["honed.registry_ref"] == "scorer:2"
    run_artifacts = {a.path for a in client.list_artifacts(version.run_id, "honed")}
    assert {"honed/recipe.json", "honed/report.json"} <= run_artifacts

    # the version holds honed's winner, with the runtime options of its recipe in the flavour
    from honed.intake.mlflow import fetch, runtime_options
    from honed.model.loader import file_sha256
    from honed.search.recipe import Recipe

    fetched = fetch("models:/scorer/2", mlflow_uri=server)
    winner = out / "model.onnx"
    assert onnx.load(str(fetched.model_file)) == onnx.load(str(winner))
    assert version.tags["honed.sha256"] == file_sha256(winner)
    import yaml

    flavour = yaml.safe_load((fetched.folder / "MLmodel").read_text())["flavors"]["onnx"]
    providers, options = runtime_options(Recipe.read(out / "recipe.json").runtime.to_dict())
    assert flavour["providers"] == providers and flavour["onnx_session_options"] == options

    # honed's registry links the optimized version to the MLflow one
    from honed.registry import open_registry

    with open_registry(registry) as reg:
        assert "mlflow=models:/scorer/2" in reg.resolve("scorer:2").tags

    x = np.random.default_rng(1).standard_normal((5, K)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyfunc = mlflow.pyfunc.load_model("models:/scorer/2")
        predicted = pyfunc.predict({"x": x})
    theirs = np.asarray(predicted["y"] if isinstance(predicted, dict) else predicted.iloc[:, 0].tolist())
    ours = ort.InferenceSession(str(winner), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
    reference = ort.InferenceSession(scorer.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(ours, reference.run(None, {"x": x})[0], rtol=1e-2, atol=1e-2)
    served = _serve_answer("models:/scorer/2", server, x, tmp_path)
    np.testing.assert_allclose(theirs, served, rtol=1e-5, atol=1e-6)


def _serve_answer(uri: str, server: str, x: np.ndarray, cwd: Path) -> np.ndarray:
    """``honed serve URI`` in a subprocess, asked once over V2 REST; its ``y``."""
    import httpx

    log = cwd / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "honed", "serve", uri, "--mlflow-uri", server, "--http", "127.0.0.1:0"]
    with log.open("wb") as handle:
        proc = subprocess.Popen([*cmd, "--grpc", "off"], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + 90
        while (match := re.search(r"listening: HTTP on [\d.]+:(\d+)", log.read_text(errors="replace"))) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"honed serve did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        base = f"http://127.0.0.1:{match.group(1)}"
        while httpx.get(f"{base}/v2/health/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail(f"honed serve did not become ready:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        reply = httpx.post(f"{base}/v2/models/scorer/infer", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        output = reply.json()["outputs"][0]
        return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    finally:
        _stop(proc)


def test_bench_reads_a_version_and_caches_it(
    server: str, scorer: onnx.ModelProto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "models:/scorer/1", "--iterations", "3", "--warmup", "1", "--json", "--mlflow-uri", server]
    assert run(args) == 0
    assert "/models/scorer/1/scorer/model.onnx" in capsys.readouterr().out
    cached = list((tmp_path / "cache" / "mlflow").glob("*/models/scorer/1/scorer/model.onnx"))
    assert len(cached) == 1 and onnx.load(str(cached[0])) == scorer

    # honed serve models:/... serves the same fetched folder, under the MLflow model's name
    from honed.intake.mlflow import fetch
    from honed.serve.repository import discover

    fetched = fetch("models:/scorer@prod", mlflow_uri=server)
    assert fetched.folder == cached[0].parent and fetched.resolved_uri == "models:/scorer/1"
    sources, bad = discover(fetched.folder)
    assert bad == [] and [s.name for s in sources] == ["scorer"]

    # the same model by the run that logged it
    by_run = fetch(f"runs:/{fetched.run_id}/model", mlflow_uri=server)
    assert by_run.name == "model" and onnx.load(str(by_run.model_file)) == scorer
    line = _bad(["bench", "runs:/0123456789abcdef0123456789abcdef/model", "--mlflow-uri", server], capsys)
    assert "MLflow run 0123456789abcdef0123456789abcdef not found" in line


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("models:/skl/1", "is an MLflow model of flavour python_function, sklearn, not onnx"),
        ("models:/scorer@nowhere", "MLflow model 'scorer' has no alias 'nowhere'"),
        ("models:/scorer/99", "MLflow model 'scorer' has no version 99"),
    ],
)
def test_bad_models_are_refused_in_one_line(
    server: str,
    scorer: onnx.ModelProto,
    sklearn_model: str,
    uri: str,
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _bad(["bench", uri, "--iterations", "1", "--mlflow-uri", server], capsys)
    assert says in line
    out = tmp_path / "out"
    assert says in _bad(["optimize", uri, "--out", str(out), "--mlflow-uri", server], capsys) and not out.exists()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []  # nothing half-fetched is kept


def test_an_unreachable_server_is_refused_before_the_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    line = _bad(["bench", "models:/scorer/1", "--mlflow-uri", url], capsys)
    assert f"cannot reach the MLflow tracking server at {url}" in line
    model = matmul_model(tmp_path / "m.onnx", k=K, n=N)
    out = tmp_path / "out"
    line = _bad(["optimize", str(model), "--out", str(out), "--to-mlflow", "scorer", "--mlflow-uri", url], capsys)
    assert "cannot reach the MLflow tracking server" in line and not out.exists()


def test_to_mlflow_refuses_a_backend_the_onnx_flavour_does_not_run(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, out = matmul_model(tmp_path / "m.onnx", k=K, n=N), tmp_path / "out"
    args = ["optimize", str(model), "--out", str(out), "--backends", "onnxruntime,openvino", "--to-mlflow", "s"]
    line = _bad([*args, "--mlflow-uri", server], capsys)
    assert "leave openvino out of --backends" in line and not out.exists()


def test_a_uri_without_a_server_says_how_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert "pass --mlflow-uri URL or set MLFLOW_TRACKING_URI" in _bad(["bench", "models:/scorer/1"], capsys)


def test_runtime_options_carry_what_honed_chose_in_mlflows_terms() -> None:
    from mlflow.utils.model_utils import _validate_onnx_session_options

    from honed.intake.mlflow import runtime_options
    from honed.runtime.config import RuntimeConfig

    config = RuntimeConfig(
        provider="cuda",
        graph_optimization="basic",
        intra_op_threads=2,
        spinning=False,
        affinity=(0, 1),
        options={"session.set_denormal_as_zero": "1"},
    )
    providers, options = runtime_options(config.to_dict())
    assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options == {
        "graph_optimization_level": 1,
        "execution_mode": "sequential",
        "intra_op_num_threads": 2,
        "extra_session_config": {
            "session.intra_op.allow_spinning": "0",
            "session.inter_op.allow_spinning": "0",
            "session.set_denormal_as_zero": "1",
        },
    }
    _validate_onnx_session_options(options)  # MLflow's own check of the flavour's session options
    with pytest.raises(InvalidArgument, match="--backends onnxruntime"):
        runtime_options(RuntimeConfig(backend="openvino").to_dict())


@pytest.mark.parametrize("uri", ["models:/scorer", "models:/scorer@", "models:/../1", "runs:/abc/../../x", "runs:/abc"])
def test_malformed_uris_are_refused(server: str, uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = _bad(["bench", uri, "--mlflow-uri", server], capsys)
    assert ("a run URI is runs:/RUN_ID/PATH" if uri.startswith("runs:/") else "models:/NAME/VERSION or") in line
