"""Feature-store inputs against a real Feast: a local feature repository on the SQLite online store, ``feast apply``
and ``materialize-incremental`` run here, ``feast serve`` answering on loopback, and a real ``honed serve`` whose
model config names it. Inference by entity key must equal inference with the tensors given directly, on REST and
gRPC; a missing entity is a 404 / NOT_FOUND, never zeros.

Feast runs from its own interpreter (its pins clash with honed's): ``HONED_FEAST_PYTHON``, else ``.venv-feast``
at the repository root (``.ci/run`` creates it); without one the Feast tests skip, saying so."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from honed.errors import InvalidArgument
from honed.serve.config import ModelServingConfig
from honed.serve.contract import FEATURE_FETCH_DURATION
from honed.serve.features import FeatureConfig
from tests.conformance.server import RunningServer, start_server
from tests.graphs import save
from tests.plan.prometheus_server import free_port

ROOT = Path(__file__).resolve().parents[2]
REFS = ["driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:trips"]
ROWS = {1001: (0.1, 0.2, 10), 1002: (0.5, 0.4, 20), 1003: (0.9, 0.6, 30)}

FEATURE_REPO = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float32, Int64

driver = Entity(name="driver", join_keys=["driver_id"])
stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=3650),
    schema=[Field(name="conv_rate", dtype=Float32), Field(name="acc_rate", dtype=Float32),
            Field(name="trips", dtype=Int64)],
    source=FileSource(path="data/driver_stats.parquet", timestamp_field="event_timestamp"),
    online=True,
)
scorer_v1 = FeatureService(name="scorer_v1", features=[stats])
"""

WRITE_DATA = """
import datetime as dt, json, sys
import pandas as pd
rows = json.loads(sys.argv[1])
when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
pd.DataFrame({
    "driver_id": [int(k) for k in rows],
    "conv_rate": [v[0] for v in rows.values()],
    "acc_rate": [v[1] for v in rows.values()],
    "trips": [v[2] for v in rows.values()],
    "event_timestamp": [when] * len(rows),
}).to_parquet("data/driver_stats.parquet")
"""


def feast_python() -> Path | None:
    configured = os.environ.get("HONED_FEAST_PYTHON")
    candidate = Path(configured) if configured else ROOT / ".venv-feast" / "bin" / "python"
    return candidate if candidate.is_file() else None


def scorer(path: Path) -> Path:
    """y = x @ W + z: x float32 [batch, 3] (the features), z float32 [batch, 1] (given by the caller)."""
    path.parent.mkdir(parents=True)
    w = numpy_helper.from_array(np.array([[1.0], [10.0], [0.01]], dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "z"], ["y"])],
        "scorer",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [w],
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@dataclass
class Stack:
    server: RunningServer
    feast_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    python = feast_python()
    if python is None or not (python.parent / "feast").is_file():
        pytest.skip("needs Feast in its own venv: set HONED_FEAST_PYTHON or create .venv-feast (.ci/run does)")
    feast = [str(python.parent / "feast")]
    repo = tmp_path_factory.mktemp("feast")
    (repo / "data").mkdir()
    (repo / "feature_store.yaml").write_text(
        "project: honed_scorer\nregistry: data/registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\nentity_key_serialization_version: 3\n"
    )
    (repo / "features.py").write_text(FEATURE_REPO)
    env = {**os.environ, "FEAST_USAGE": "False"}
    run = {"cwd": repo, "env": env, "check": True, "capture_output": True, "timeout": 120}
    import json

    subprocess.run([str(python), "-c", WRITE_DATA, json.dumps({str(k): v for k, v in ROWS.items()})], **run)
    subprocess.run([*feast, "apply"], **run)
    subprocess.run([*feast, "materialize-incremental", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")], **run)
    port = free_port()
    log = (repo / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
        cwd=repo,
        env=env,
        stdout=log,
        stderr=log,
    )
    feast_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{feast_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"feast serve did not come up: {(repo / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
        models = tmp_path_factory.mktemp("repo")
        features = {"feast_url": feast_url, "entities": ["driver_id"], "inputs": {"x": REFS}}
        for name, extra in (("scorer", {"feature_service": "scorer_v1"}), ("by_refs", {})):
            scorer(models / name / "1" / "model.onnx")
            (models / name / "config.yaml").write_text(yaml.safe_dump({"features": {**features, **extra}}))
        scorer(models / "offline" / "1" / "model.onnx")
        down = {**features, "feast_url": f"http://127.0.0.1:{free_port()}", "timeout_ms": 500}
        (models / "offline" / "config.yaml").write_text(yaml.safe_dump({"features": down}))
        server = start_server(["--repository", str(models)], tmp_path_factory.mktemp("log") / "server.log")
        yield Stack(server, feast_url)
        assert server.stop() == 0, server.output()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _direct(ids: list[int]) -> np.ndarray:
    return np.array([ROWS[i] for i in ids], dtype=np.float32)


def _rest(stack: Stack, model: str, inputs: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{stack.server.base}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=30)


def _z(rows: int) -> dict[str, Any]:
    return {"name": "z", "datatype": "FP32", "shape": [rows, 1], "data": [0.5 * (i + 1) for i in range(rows)]}


@pytest.mark.parametrize("model", ["scorer", "by_refs"])
def test_rest_inference_by_entity_key_equals_the_tensors_given_directly(stack: Stack, model: str) -> None:
    ids = [1003, 1001, 1002]
    keyed = _rest(stack, model, [{"name": "driver_id", "datatype": "INT64", "shape": [3], "data": ids}, _z(3)])
    assert keyed.status_code == 200, keyed.text
    x = _direct(ids)
    direct = _rest(
        stack, model, [{"name": "x", "datatype": "FP32", "shape": [3, 3], "data": x.ravel().tolist()}, _z(3)]
    )
    assert direct.status_code == 200, direct.text
    assert keyed.json()["outputs"][0]["data"] == direct.json()["outputs"][0]["data"]
    want = x @ np.array([1.0, 10.0, 0.01], dtype=np.float32) + np.array([0.5, 1.0, 1.5], dtype=np.float32)
    assert keyed.json()["outputs"][0]["data"] == pytest.approx(want.tolist(), rel=1e-6)


def test_grpc_inference_by_entity_key_equals_the_tensors_given_directly(stack: Stack) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(stack.server.grpc_url)
    z = np.array([[0.25], [0.75]], dtype=np.float32)

    def infer(first: Any) -> np.ndarray:
        second = grpcclient.InferInput("z", [2, 1], "FP32")
        second.set_data_from_numpy(z)
        return client.infer("scorer", [first, second]).as_numpy("y")

    keys = grpcclient.InferInput("driver_id", [2, 1], "BYTES")  # string join keys work too
    keys.set_data_from_numpy(np.array([[b"1002"], [b"1003"]], dtype=object))
    given = grpcclient.InferInput("x", [2, 3], "FP32")
    given.set_data_from_numpy(_direct([1002, 1003]))
    np.testing.assert_array_equal(infer(keys), infer(given))

    missing = grpcclient.InferInput("driver_id", [1], "INT64")
    missing.set_data_from_numpy(np.array([4242], dtype=np.int64))
    second = grpcclient.InferInput("z", [1, 1], "FP32")
    second.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.infer("scorer", [missing, second])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert "driver_id=4242" in caught.value.message()


def test_a_missing_entity_is_404_never_zeros(stack: Stack) -> None:
    answer = _rest(
        stack, "scorer", [{"name": "driver_id", "datatype": "INT64", "shape": [2], "data": [1001, 9999]}, _z(2)]
    )
    assert answer.status_code == 404
    assert "driver_id=9999" in answer.json()["error"] and "NOT_FOUND" in answer.json()["error"]


def test_requests_without_keys_or_with_bad_keys_are_400(stack: Stack) -> None:
    no_keys = _rest(stack, "scorer", [_z(1)])
    assert no_keys.status_code == 400 and "give the entity key(s) driver_id" in no_keys.json()["error"]
    floats = _rest(stack, "scorer", [{"name": "driver_id", "datatype": "FP32", "shape": [1], "data": [1.0]}, _z(1)])
    assert floats.status_code == 400 and "must be INT64" in floats.json()["error"]


def test_an_unreachable_feature_store_is_503(stack: Stack) -> None:
    answer = _rest(stack, "offline", [{"name": "driver_id", "datatype": "INT64", "shape": [1], "data": [1001]}, _z(1)])
    assert answer.status_code == 503 and "is unreachable" in answer.json()["error"]


def test_the_fetch_time_has_its_own_histogram(stack: Stack) -> None:
    def fetches() -> float:
        body = httpx.get(f"{stack.server.base}/metrics", timeout=10).text
        for family in text_string_to_metric_families(body):
            if family.name == FEATURE_FETCH_DURATION.name:
                return sum(
                    s.value for s in family.samples if s.name.endswith("_count") and s.labels.get("model") == "scorer"
                )
        return 0.0

    before = fetches()
    ok = _rest(stack, "scorer", [{"name": "driver_id", "datatype": "INT64", "shape": [1], "data": [1001]}, _z(1)])
    assert ok.status_code == 200
    assert fetches() == before + 1


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"entities": ["driver_id"], "inputs": {"x": REFS}}, "features needs 'feast_url'"),
        ({"feast_url": "127.0.0.1:6566", "entities": ["d"], "inputs": {"x": REFS}}, "must be an http"),
        ({"feast_url": "http://f", "entities": [], "inputs": {"x": REFS}}, "non-empty list of join key"),
        ({"feast_url": "http://f", "entities": ["d"], "inputs": {"x": ["conv_rate"]}}, "write it view:feature"),
        ({"feast_url": "http://f", "entities": ["d"], "inputs": {"d": REFS}}, "also an entity key"),
        ({"feast_url": "http://f", "entities": ["d"], "inputs": {}}, "map each fetched model input"),
        ({"feast_url": "http://f", "entities": ["d"], "inputs": {"x": REFS}, "ttl": 3}, "unknown features key"),
    ],
)
def test_bad_feature_configs_say_what_to_fix(features: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ModelServingConfig.from_dict({"features": features})


def test_a_feature_config_round_trips() -> None:
    data = {"feast_url": "http://f:6566/", "feature_service": "s", "entities": ["d"], "inputs": {"x": REFS}}
    config = ModelServingConfig.from_dict({"features": data})
    assert isinstance(config.features, FeatureConfig) and config.features.feast_url == "http://f:6566"
    assert ModelServingConfig.from_dict(config.to_dict()) == config
    assert "features" not in ModelServingConfig().to_dict()
