"""``honed serve --registry URL --model REF``: versions from the registry, integrity, residency and the audit log,
through the real server's REST and gRPC endpoints."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from honed.cli.main import run
from honed.registry import open_registry
from honed.runtime import create_session
from tests.conformance import models
from tests.conformance.server import start_server

ACTOR = "test-server"


def _infer(base: str, model: str, x: np.ndarray, residency: str | None) -> httpx.Response:
    headers = {"X-Data-Residency": residency} if residency is not None else {}
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    return httpx.post(f"{base}/v2/models/{model}/infer", json=body, headers=headers, timeout=30)


def _counter(metrics: str, model: str, reason: str) -> float:
    pattern = rf'^honed_residency_refusals_total\{{model="{model}",reason="{reason}"\}} (\S+)$'
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_serve_from_registry_with_integrity_residency_and_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HONED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HONED_ARTIFACTS", raising=False)
    url = f"sqlite:///{tmp_path / 'reg.db'}"
    src = tmp_path / "src"
    with open_registry(url) as reg:
        v1 = reg.register(models.mlp(src / "v1.onnx", seed=1), "fraud-scorer", actor="alice")
        v2 = reg.register(models.mlp(src / "v2.onnx", seed=2), "fraud-scorer", actor="alice", residency=["AE"])
        v3 = reg.register(models.mlp(src / "v3.onnx", seed=3), "fraud-scorer", actor="alice", residency=["AE"])
        reg.set_alias("fraud-scorer", "production", v2.version, actor="alice")
        reg.register(models.mlp(src / "sa.onnx", seed=4), "saudi", actor="alice", residency=["SA"])
        bad = reg.register(models.mlp(src / "t.onnx", seed=5), "tampered", actor="alice", residency=["AE"])
        blob = reg.store.local_path(bad.sha256)
    blob.chmod(0o644)
    blob.write_bytes(models.mlp(tmp_path / "other.onnx", seed=6).read_bytes())  # same size class, other bytes

    args = ["--registry", url, "--jurisdiction", "ae", "--actor", ACTOR, "--max-batch-size", "4"]
    for ref in ("fraud-scorer@production", "fraud-scorer:1", "saudi", "tampered"):
        args += ["--model", ref]
    server = start_server(args, tmp_path / "log")
    try:
        index = {
            (r["name"], r.get("version", "")): r
            for r in httpx.post(f"{server.base}/v2/repository/index", timeout=10).json()
        }
        # production (AE) serves as V2 version 2; version 1 (unlabelled) is refused; the rest still serve
        assert index[("fraud-scorer", "2")]["state"] == "READY"
        assert ("fraud-scorer", "1") not in index
        assert index[("saudi", "")]["state"] == "UNAVAILABLE" and "may run only in SA" in index[("saudi", "")]["reason"]
        assert index[("tampered", "")]["state"] == "UNAVAILABLE"
        assert "sha256" in index[("tampered", "")]["reason"]

        x = np.arange(16, dtype=np.float32).reshape(2, 8) / 16
        ok = _infer(server.base, "fraud-scorer", x, "AE")
        assert ok.status_code == 200, ok.text
        assert ok.json()["model_version"] == "2"
        want = create_session(src / "v2.onnx").run({"x": x})["y"]
        got = np.array(ok.json()["outputs"][0]["data"], np.float32).reshape(2, 4)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert _infer(server.base, "fraud-scorer", x, "SA, ae").status_code == 200  # any of a list

        refused = _infer(server.base, "fraud-scorer", x, "SA")
        assert refused.status_code == 403
        assert "approved only for AE" in refused.json()["error"]
        undeclared = _infer(server.base, "fraud-scorer", x, None)
        assert undeclared.status_code == 403 and "X-Data-Residency" in undeclared.json()["error"]
        assert _infer(server.base, "fraud-scorer", x, "not a code!").status_code == 403

        g = grpcclient.InferenceServerClient(server.grpc_url)
        inp = grpcclient.InferInput("x", [2, 8], "FP32")
        inp.set_data_from_numpy(x)
        out = g.infer("fraud-scorer", [inp], headers={"x-data-residency": "AE"})
        np.testing.assert_allclose(out.as_numpy("y"), want, rtol=1e-5, atol=1e-6)
        with pytest.raises(InferenceServerException) as denied:
            g.infer("fraud-scorer", [inp], headers={"x-data-residency": "SA"})
        assert "PERMISSION_DENIED" in str(denied.value.status())
        g.close()

        metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
        assert _counter(metrics, "fraud-scorer", "not_approved") == 2  # REST + gRPC
        assert _counter(metrics, "fraud-scorer", "undeclared") == 1
        assert _counter(metrics, "fraud-scorer", "invalid") == 1
        assert _counter(metrics, "fraud-scorer", "placement") == 1
        assert _counter(metrics, "saudi", "placement") == 1

        # the alias moves: a reload serves the new target under its own version number
        with open_registry(url) as reg:
            reg.set_alias("fraud-scorer", "production", v3.version, actor="alice")
        assert httpx.post(f"{server.base}/v2/repository/models/fraud-scorer/load", timeout=30).status_code == 200
        moved = _infer(server.base, "fraud-scorer", x, "AE")
        assert moved.json()["model_version"] == "3"
        # a refused model stays refused on reload: 403 with the reason
        again = httpx.post(f"{server.base}/v2/repository/models/saudi/load", timeout=30)
        assert again.status_code == 403 and "SA" in again.json()["error"]
        assert httpx.post(f"{server.base}/v2/repository/models/fraud-scorer/unload", timeout=30).status_code == 200
    finally:
        assert server.stop() == 0, server.output()

    with open_registry(url) as reg:
        mine = [(e.action, e.target) for e in reg.audit_log() if e.actor == ACTOR]
        assert reg.verify_audit().ok
    assert ("load", "fraud-scorer:2") in mine
    assert ("refuse_load", f"fraud-scorer:{v1.version}") in mine
    assert ("refuse_load", "saudi:1") in mine
    assert ("integrity_failure", "tampered:1") in mine
    assert ("load", "tampered:1") not in mine
    assert mine.count(("refuse_request", "fraud-scorer:2")) == 4
    assert mine.index(("load", "fraud-scorer:3")) < mine.index(("unload", "fraud-scorer:2"))
    assert ("unload", "fraud-scorer:3") in mine


def test_a_server_without_jurisdiction_refuses_declared_residency(tmp_path: Path) -> None:
    model = models.mlp(tmp_path / "m" / "model.onnx").parent
    server = start_server([str(model)], tmp_path / "log")
    try:
        x = np.ones((1, 8), np.float32)
        assert _infer(server.base, "m", x, None).status_code == 200
        refused = _infer(server.base, "m", x, "AE")
        assert refused.status_code == 403 and "approved only for no jurisdiction" in refused.json()["error"]
        assert _counter(httpx.get(f"{server.base}/metrics").text, "m", "not_approved") == 1
    finally:
        assert server.stop() == 0, server.output()


def test_a_registry_server_without_refs_serves_every_production_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HONED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HONED_ARTIFACTS", raising=False)
    url = f"sqlite:///{tmp_path / 'reg.db'}"
    with open_registry(url) as reg:
        reg.register(models.mlp(tmp_path / "v1.onnx", seed=1), "scorer", actor="alice", residency=["AE"])
        v2 = reg.register(models.mlp(tmp_path / "v2.onnx", seed=2), "scorer", actor="alice", residency=["AE"])
        reg.set_alias("scorer", "production", v2.version, actor="alice")
        reg.register(models.mlp(tmp_path / "other.onnx", seed=3), "unaliased", actor="alice", residency=["AE"])
    server = start_server(["--registry", url, "--jurisdiction", "AE"], tmp_path / "log")
    try:
        answer = _infer(server.base, "scorer", np.ones((1, 8), np.float32), "AE")
        assert answer.status_code == 200 and answer.json()["model_version"] == "2"
        assert httpx.get(f"{server.base}/v2/models/unaliased/ready").status_code != 200
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--registry", "REG"], "no model in the registry has a 'production' alias"),
        (["--model", "m"], "give --registry"),
        (["MODEL", "--jurisdiction", "AE"], "carry no residency label"),
        (["MODEL", "--jurisdiction", "A!"], "invalid jurisdiction"),
        (["MODEL", "--registry", "REG", "--model", "m"], "not both"),
        (["--registry", "REG", "--model", "nope"], "no model named 'nope'"),
        (["--registry", "postgresql://u:pw@127.0.0.1:1/db", "--model", "m"], "cannot reach the registry"),
        (["--registry", "REG", "--model", "m@"], "invalid alias"),
    ],
)
def test_registry_flags_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    model = models.mlp(tmp_path / "m" / "model.onnx").parent
    reg = f"sqlite:///{tmp_path / 'reg.db'}"
    args = [str(model) if a == "MODEL" else reg if a == "REG" else a for a in args]
    assert run(["serve", *args, "--http", "127.0.0.1:0", "--grpc", "off"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
