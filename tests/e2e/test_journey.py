"""A user's whole path through honed, as README gives it, from a working directory of their own with relative paths:

optimize a real model (Magika) with calibration data and ``--register``; serve it from the registry and infer over
REST and gRPC with tritonclient; roll the original version out in place of the optimized one under tritonclient
requests until the server's controller promotes it; plan with ``model: out/``; write Kubernetes manifests from the
plan and validate every one strictly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import numpy as np
import pytest
import yaml

from honed.cli.main import run
from honed.runtime import create_session

pytest.importorskip("magika")
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"
_LISTENING = re.compile(r"listening: HTTP on [\d.]+:(\d+), gRPC on [\d.]+:(\d+)")

FLEET = {
    "pools": [
        {"name": "cpu-ae", "count": 2, "cpu": 8, "memory_gb": 32, "cost_per_hour": 0.4, "jurisdiction": "AE"},
    ]
}
DEPLOYMENTS = {
    "deployments": [
        {"name": "scorer", "model": "out/", "slo_p99_ms": 5000, "peak_rps": 20, "residency": ["AE"]},
    ]
}


def _calibration_data(folder: Path) -> None:
    from honed.demo import MagikaFeatureConfig, build_magika_datasets, magika_model_dir

    model_dir = magika_model_dir()
    (folder / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    config = MagikaFeatureConfig.from_model_dir(model_dir)
    calib, evaluation = build_magika_datasets(folder / "data", calibration=48, evaluation=48, config=config)
    calib.rename(folder / "calib.npz")
    evaluation.rename(folder / "eval.npz")


def _serve(args: list[str], cwd: Path) -> tuple[subprocess.Popen[bytes], Path, int, int]:
    log = cwd / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "honed", "serve", *args, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"]
    with open(log, "wb") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"honed serve exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            http_port, grpc_port = int(match.group(1)), int(match.group(2))
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2).status_code == 200:
                    return proc, log, http_port, grpc_port
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"honed serve did not become ready:\n{log.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def _samples(url: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The server's /metrics samples of one family, by their sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for metric in text_string_to_metric_families(text)
        for sample in metric.samples
        if sample.name == family
    }


def _roll_out_the_original(
    http: Any, url: str, name: str, rows: np.ndarray, capsys: pytest.CaptureFixture[str], log: Path
) -> None:
    """scorer:1 (the original, registered by --register as the optimized version's parent) rolled out in place of
    scorer:2 with one-second intervals, held to the agreement optimize demanded of scorer:2 (its --metric agreement
    --min 0.9, the rollout's default): the server is the controller, promotes it at the last step, and the
    production alias moves; the audit log, the server's metrics and the answers' versions say the same. The same
    input goes every time, so the mirrored pairs' agreement is fixed."""
    import tritonclient.http as httpclient

    original, optimized = create_session(Path("model.onnx")), create_session(Path("out/model.onnx"))
    x = next(  # a row both versions classify alike: its mirrored pairs agree
        r
        for r in (rows[i : i + 1] for i in range(len(rows)))
        if np.argmax(next(iter(original.run({name: r}).values())))
        == np.argmax(next(iter(optimized.run({name: r}).values())))
    )
    inp = httpclient.InferInput(name, list(x.shape), "INT32")
    inp.set_data_from_numpy(x.astype(np.int32))
    registry = "sqlite:///registry.db"
    flags = ["--interval", "1s", "--min-requests", "5", "--mirror", "0.5", "--deadline", "120s"]
    flags += ["--max-p99-ratio", "off", "--registry", registry]  # --min-agreement: optimize's --min, below
    capsys.readouterr()
    code = run(["rollout", "start", "scorer", "--to", "1", "--steps", "50,100", *flags, "--reason", "journey"])
    assert code == 0, capsys.readouterr().err
    versions: set[str] = set()
    deadline = time.monotonic() + 120  # generous: the controller's own clock and intervals decide, not speed
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for _ in range(10):
            versions.add(http.infer("scorer", [inp]).get_response()["model_version"])
        capsys.readouterr()
        assert run(["rollout", "status", "scorer", "--json", "--registry", registry]) == 0
        status = json.loads(capsys.readouterr().out)
        if status["status"] not in ("running", "paused", "awaiting_approval"):
            break
    assert status.get("status") == "promoted", f"{status}\n{log.read_text(errors='replace')}"
    assert [v["weight"] for v in status["verdicts"] if v["verdict"] == "pass"] == [50, 100]
    # the agreement gate is the one --register recorded: scorer:2 was optimized from scorer:1 under --min 0.9
    assert status["settings"]["min_agreement"] == 0.9 and status["settings"]["agreement_metric"] == "top1"
    assert {"1", "2"} <= versions  # both versions answered real requests during the rollout
    # the server's own account: it took every pass verdict as controller, and both versions answered requests
    verdicts = _samples(url, "honed_rollout_verdicts_total")
    assert verdicts.get((("model", "scorer"), ("verdict", "pass"))) == 2, verdicts
    answered = _samples(url, "honed_requests_total")
    for version in ("1", "2"):
        assert any(("version", version) in labels and n > 0 for labels, n in answered.items()), answered
    from honed.registry import open_registry

    with open_registry(registry) as reg:
        assert reg.aliases("scorer")["production"] == 1
        actions = [e.action for e in reg.audit_log(name="scorer") if e.action.startswith("rollout.")]
        assert actions == ["rollout.start", "rollout.advance", "rollout.promote"], actions  # holds write none
        (start,) = reg.audit_log(name="scorer", action="rollout.start")
        assert start.details["min_agreement_from"] == "scorer:2 (honed optimize)", start.details
        (promote,) = reg.audit_log(name="scorer", action="rollout.promote")
        assert promote.details["verdict"] == "pass", promote.details
        assert not reg.verify_audit().problems


def test_optimize_register_serve_plan_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HONED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HONED_ARTIFACTS", raising=False)
    monkeypatch.delenv("HONED_REGISTRY", raising=False)
    _calibration_data(tmp_path)

    # 1. optimize, with relative paths everywhere, and register the result
    code = run(
        [
            "optimize", "model.onnx", "--data", "calib.npz", "--eval-data", "eval.npz", "--out", "out/",
            "--metric", "agreement", "--min", "0.9", "--passes", "graph,int8-dynamic,int8-static",
            "--backends", "onnxruntime", "--no-tune", "--time-budget", "90s", "--measure", "0.1", "--rounds", "2",
            "--calibration-samples", "32", "--cache-dir", "cache", "--register", "scorer",
            "--registry", "sqlite:///registry.db",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code in (0, 3), captured.out + captured.err
    assert "registered scorer:2" in captured.err
    report = json.loads(Path("out/report.json").read_text())
    static = [c for c in report["candidates"] if any(p["name"] == "int8-static" for p in c["passes"])]
    assert static, "the search tried no static INT8 candidate"
    for candidate in static:  # a relative --data path must reach the quantizer
        assert "No such file" not in str(candidate["reason"]), candidate
        assert candidate["status"] != "failed", candidate

    # 2. serve from the registry; tritonclient over REST and gRPC gets what ONNX Runtime computes in-process
    features = np.load("eval.npz")
    (name,) = features.files
    x = features[name][:1]
    (expected,) = create_session(Path("out/model.onnx")).run({name: x}).values()
    proc, log, http_port, grpc_port = _serve(["--registry", "sqlite:///registry.db"], tmp_path)
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        assert http.is_model_ready("scorer")
        (output,) = http.get_model_metadata("scorer")["outputs"]
        inp = httpclient.InferInput(name, list(x.shape), "INT32")
        inp.set_data_from_numpy(x.astype(np.int32))
        rest = http.infer("scorer", [inp]).as_numpy(output["name"])
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        ginp = grpcclient.InferInput(name, list(x.shape), "INT32")
        ginp.set_data_from_numpy(x.astype(np.int32))
        over_grpc = grpc.infer("scorer", [ginp]).as_numpy(output["name"])
        grpc.close()
        _roll_out_the_original(http, f"http://127.0.0.1:{http_port}", name, features[name], capsys, log)
        http.close()
    finally:
        assert _stop(proc) == 0, log.read_text(errors="replace")
    np.testing.assert_allclose(rest, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(over_grpc, expected, rtol=1e-5, atol=1e-6)

    # 3. plan from the optimize output folder
    Path("fleet.yaml").write_text(yaml.safe_dump(FLEET))
    Path("deployments.yaml").write_text(yaml.safe_dump(DEPLOYMENTS))
    code = run(["plan", "--fleet", "fleet.yaml", "--deployments", "deployments.yaml", "--out", "plan.json"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    plan = json.loads(Path("plan.json").read_text())
    assert len(plan["placements"]) == 1, plan.get("unplaced")
    (placement,) = plan["placements"]
    assert placement["deployment"] == "scorer" and placement["pool"] == "cpu-ae"
    assert "out/report.json (winner)" in placement["profile"]["origin"]

    # 4. deploy: manifests from the plan, each one valid by the Kubernetes schema, strictly
    code = run(["deploy", "k8s", "--plan", "plan.json", "--out", "manifests/", "--access-secret", "honed-access"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    documents = [
        doc
        for path in sorted(Path("manifests").rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "PrometheusRule"} <= kinds
    for doc in documents:
        # Kubernetes' own kinds by its schema; the operator's CRDs (PrometheusRule) are checked in tests/deploy.
        if not doc["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/")):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
