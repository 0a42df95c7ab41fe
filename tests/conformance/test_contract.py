"""The serve contract (:mod:`honed.serve.contract`) against a real server: every metric it lists is exported with
its type and labels, every ``honed_*`` metric exported is listed, and the probe paths answer on the default
layout. Importing the contract stays light, since deploy reads it without serving anything."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from honed.serve import contract
from tests.conformance import models
from tests.conformance.server import RunningServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("repo")
    models.mlp(root / "mlp" / "1" / "model.onnx")
    running = start_server(["--repository", str(root)], tmp_path_factory.mktemp("log") / "server.log")
    yield running
    assert running.stop() == 0, running.output()


def _exported(server: RunningServer) -> dict[str, tuple[str, set[str]]]:
    """Exported metric families after one inference: exposed name -> (type, label names seen on its samples)."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}
    assert httpx.post(f"{server.base}/v2/models/mlp/infer", json=body, timeout=30).status_code == 200
    scrape = httpx.get(f"{server.base}{contract.METRICS_PATH}", timeout=30)
    assert scrape.status_code == 200
    created = {_stem(m.name) + "_created" for m in contract.METRICS if m.type in ("counter", "histogram")}
    families: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(scrape.text):
        if family.name in created and family.type == "gauge":
            continue  # the creation time prometheus_client exports beside each counter and histogram
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {label for s in family.samples for label in s.labels if label != "le"}
        families[name] = (family.type, labels)
    return families


def _stem(name: str) -> str:
    return name.removesuffix("_total")


def test_every_contract_metric_is_exported_with_its_type_and_labels(server: RunningServer) -> None:
    exported = _exported(server)
    for metric in contract.METRICS:
        assert metric.name in exported, f"{metric.name} is in the contract but the server does not export it"
        kind, labels = exported[metric.name]
        assert kind == metric.type, f"{metric.name}: exported as {kind}, the contract says {metric.type}"
        assert labels <= set(metric.labels), f"{metric.name}: labels {sorted(labels)} not in {metric.labels}"
    for metric in (contract.REQUESTS, contract.REQUEST_DURATION, contract.BATCH_SIZE, contract.INFLIGHT):
        assert exported[metric.name][1] == set(metric.labels), metric.name  # series seen after one inference


def test_every_exported_honed_metric_is_in_the_contract(server: RunningServer) -> None:
    honed = {name for name in _exported(server) if name.startswith("honed_")}
    assert honed <= contract.metric_names(), honed - contract.metric_names()


def test_probe_paths_answer(server: RunningServer) -> None:
    assert httpx.get(f"{server.base}{contract.LIVE_PATH}", timeout=10).json() == {"live": True}
    assert httpx.get(f"{server.base}{contract.READY_PATH}", timeout=10).json() == {"ready": True}


def test_importing_the_contract_loads_no_serving_library() -> None:
    heavy = ("uvicorn", "grpc", "onnxruntime", "prometheus_client", "numpy")
    code = f"import sys, honed.serve.contract; print([m for m in {heavy!r} if m in sys.modules])"
    src = Path(__file__).resolve().parents[2] / "src"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(src)}
    )
    assert out.stdout.strip() == "[]"
