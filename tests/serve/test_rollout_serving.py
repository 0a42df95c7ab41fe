"""Rollouts on a real ``honed serve --registry`` process with real tiny models and a real HTTP client under load:
a good candidate is promoted through every step, then a broken one (its outputs negated) is rolled back by the
agreement of mirrored requests. The server itself is the controller. Every answer is checked against the version
that says it answered, so no request is lost or answered wrongly during a promotion or a rollback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from honed.cli.main import run
from honed.registry import open_registry
from honed.serve.rollout import agreement

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening: HTTP on [\d.]+:(\d+)")
OFFSETS = {1: 1.0, 2: 2.0, 3: 1.0}  # version -> the constant it adds; version 3 then negates
NEGATED = {3}
_ACTIVE = ("running", "paused", "awaiting_approval")


def _model(path: Path, offset: float, negate: bool) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    c = helper.make_tensor("c", TensorProto.FLOAT, [1], [offset])
    nodes = [helper.make_node("Add", ["x", "c"], ["s" if negate else "y"])]
    if negate:
        nodes.append(helper.make_node("Neg", ["s"], ["y"]))
    graph = helper.make_graph(nodes, "scorer", [x], [y], [c])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _expected(version: int, x: np.ndarray) -> np.ndarray:
    y = x + OFFSETS[version]
    return -y if version in NEGATED else y


class Load:
    """Clients sending unversioned requests until stopped; every answer is checked against its version."""

    def __init__(self, url: str, clients: int = 2) -> None:
        self.url = url
        self.stop = threading.Event()
        self.answered: Counter[int] = Counter()
        self.problems: list[str] = []
        self._threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def _client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                x = rng.normal(size=(1, 4)).astype(np.float32)
                body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.ravel().tolist()}]}
                reply = client.post(f"{self.url}/v2/models/scorer/infer", json=body)
                if reply.status_code != 200:
                    self.problems.append(f"{reply.status_code}: {reply.text}")
                    continue
                answer = reply.json()
                version = int(answer["model_version"])
                got = np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(1, 4)
                if not np.allclose(got, _expected(version, x), atol=1e-5):
                    self.problems.append(f"version {version} answered {got.tolist()} for {x.tolist()}")
                self.answered[version] += 1


def _serve(db: str, cwd: Path, artifacts: Path | None = None) -> tuple[subprocess.Popen[bytes], Path, str]:
    """``honed serve --registry db`` following rollouts every 0.2 s; its HTTP URL once ready."""
    log = cwd / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HONED_ARTIFACTS": str(artifacts or cwd / "artifacts")}
    cmd = [
        sys.executable, "-m", "honed", "serve", "--registry", db, "--model", "scorer@production",
        "--http", "127.0.0.1:0", "--grpc", "off", "--rollout-poll-s", "0.2", "--max-batch-size", "1",
    ]  # fmt: skip
    with open(log, "wb") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    end = time.monotonic() + 90
    while time.monotonic() < end and proc.poll() is None:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            url = f"http://127.0.0.1:{match.group(1)}"
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    return proc, log, url
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"honed serve did not become ready:\n{log.read_text(errors='replace')}")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    rc = run(list(args))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def _status_when(
    capsys: pytest.CaptureFixture[str], log: Path, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll ``honed rollout status --json`` until ``done(status)``; fail saying ``what`` did not happen."""
    end = time.monotonic() + 40
    while time.monotonic() < end:
        status = json.loads(_cli(capsys, "rollout", "status", "scorer", "--json"))
        if done(status):
            return dict(status)
        time.sleep(0.2)
    raise AssertionError(f"{what}: {status}\n{log.read_text(errors='replace')}")


def _until_ended(capsys: pytest.CaptureFixture[str], log: Path) -> dict[str, Any]:
    return _status_when(capsys, log, lambda s: s["status"] not in _ACTIVE, "the rollout did not end")


def test_a_good_candidate_is_promoted_and_a_negated_one_rolled_back_under_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("HONED_REGISTRY", db)
    monkeypatch.setenv("HONED_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("HONED_ACTOR", "alice")
    with open_registry(db) as reg:
        for v in (1, 2, 3):
            reg.register(_model(tmp_path / f"v{v}.onnx", OFFSETS[v], v in NEGATED), "scorer", actor="alice")
        reg.set_alias("scorer", "production", 1, actor="alice")
    proc, log, url = _serve(db, tmp_path)
    flags = (
        "--interval", "1s", "--min-requests", "15", "--mirror", "0.5", "--deadline", "30s",
        "--max-p99-ratio", "off", "--min-agreement", "0.99",
    )  # fmt: skip
    try:
        with Load(url) as load:
            _cli(capsys, "rollout", "start", "scorer", "--to", "2", "--steps", "30,100", *flags)
            promoted = _until_ended(capsys, log)
            time.sleep(0.6)  # the server reloads without version 1
            served_after_promotion = load.answered.copy()
            time.sleep(0.5)
            late = load.answered - served_after_promotion
            _cli(capsys, "rollout", "start", "scorer", "--to", "3", "--steps", "20,100", *flags)
            rolled = _until_ended(capsys, log)
            time.sleep(0.6)
        assert not load.problems, load.problems[:5]
        assert promoted["status"] == "promoted", promoted
        assert [v["weight"] for v in promoted["verdicts"] if v["verdict"] == "pass"] == [30, 100]
        assert set(late) == {2}, late  # once promoted, version 1 no longer answers
        assert rolled["status"] == "rolled_back", rolled
        last = rolled["verdicts"][-1]
        assert last["verdict"] == "fail" and last["figures"]["agreement"] < 0.5 and last["figures"]["pairs"] >= 15
        assert load.answered[3] > 0 and load.answered[2] > load.answered[3]  # 3 served its canary share only
        with open_registry(db) as reg:
            assert reg.aliases("scorer")["production"] == 2
            controllers = {e.actor for e in reg.audit_log(name="scorer") if e.action.startswith("rollout.")} - {"alice"}
            assert len(controllers) == 1 and next(iter(controllers)).endswith(f":{proc.pid}")  # the server decided
        metrics = httpx.get(f"{url}/metrics").text
        assert 'honed_rollout_verdicts_total{model="scorer",verdict="fail"} 1.0' in metrics
        assert 'honed_rollout_step{model="scorer"} 0.0' in metrics
    finally:
        proc.terminate()
        proc.wait(30)
    # SIGTERM after two rollouts and their reloads: an ordered shutdown, no runtime thread left to abort the exit
    assert proc.returncode == 0 and "terminate called" not in log.read_text(errors="replace"), log.read_text()


def test_agreement_metrics() -> None:
    a = np.array([[1.0, 3.0, 2.0], [0.0, 1.0, 5.0]])
    assert agreement("top1", a, a + 1) == 1.0 and agreement("top1", a, -a) == 0.0
    assert agreement("top1", a, np.array([[0.0, 9.0, 0.0], [9.0, 0.0, 0.0]])) == 0.5
    assert agreement("cosine", a, 2 * a) == pytest.approx(1.0) and agreement("cosine", a, -a) == pytest.approx(-1.0)
    assert agreement("top1", a, a[:1]) == 0.0  # shapes differ: no agreement
    one = a[1:]  # one row, as most mirrored requests are
    assert agreement("top1", one, one * 2) == 1.0 and agreement("top1", one, np.array([[9.0, 0.0, 0.0]])) == 0.0
    assert agreement("top1", a[0], a[0] + 1) == 1.0 and agreement("top1", a[0], -a[0]) == 0.0
    assert all(isinstance(agreement("top1", x, x), float) for x in (a, one, a[0]))


def test_a_server_killed_mid_rollout_resumes_at_the_same_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("HONED_REGISTRY", db)
    monkeypatch.setenv("HONED_ARTIFACTS", str(tmp_path / "artifacts"))
    with open_registry(db) as reg:
        for v in (1, 2):
            reg.register(_model(tmp_path / f"v{v}.onnx", OFFSETS[v], False), "scorer", actor="alice")
        reg.set_alias("scorer", "production", 1, actor="alice")
    _cli(
        capsys, "rollout", "start", "scorer", "--to", "2", "--steps", "20,50,100", "--interval", "1s",
        "--min-requests", "15", "--mirror", "0.5", "--deadline", "60s", "--max-p99-ratio", "off",
    )  # fmt: skip
    first, log, url = _serve(db, tmp_path)
    try:
        with Load(url) as load:
            at = _status_when(capsys, log, lambda s: s["step"] >= 1 or s["status"] != "running", "no step 2")
        assert not load.problems, load.problems[:5]
    finally:
        first.kill()  # SIGKILL: no drain, no unload, the lease left behind
        first.wait(30)
    after_kill = json.loads(_cli(capsys, "rollout", "status", "scorer", "--json"))
    assert after_kill["status"] == "running" and after_kill["step"] == at["step"]
    second, log, url = _serve(db, tmp_path)
    try:
        with Load(url) as load:
            done = _until_ended(capsys, log)
        assert not load.problems, load.problems[:5]
    finally:
        second.terminate()
        second.wait(30)
    assert done["status"] == "promoted", done
    verdicts = done["verdicts"]
    weights = [v["weight"] for v in verdicts]
    assert weights == sorted(weights) and weights[-1] == 100  # never back to an earlier step
    holders = [v["actor"].rsplit(":", 1)[1] for v in verdicts]
    assert holders[0] == str(first.pid) and holders[-1] == str(second.pid)
