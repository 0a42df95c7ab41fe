"""V2 conformance: a real ``honed serve`` driven by the official tritonclient (HTTP and gRPC, JSON and binary)
and plain httpx. Outputs must equal in-process ONNX Runtime; bad input must get a clear error and the right status,
and the server must keep serving."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from honed.runtime import create_session
from tests.conformance import models
from tests.conformance.server import RunningServer, start_server

MAX_BATCH = 4
MAX_BODY_MB = 1


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    models.mlp(root / "mlp" / "1" / "model.onnx", seed=1)
    models.mlp(root / "mlp" / "2" / "model.onnx", seed=2)
    (root / "mlp" / "config.yaml").write_text(f"batching:\n  max_batch_size: {MAX_BATCH}\n")
    models.typed(root / "typed" / "1" / "model.onnx")
    (root / "typed" / "config.json").write_text(json.dumps({"batching": {"max_batch_size": 8}}))
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx model")
    (root / "badconfig" / "1").mkdir(parents=True)
    models.mlp(root / "badconfig" / "1" / "model.onnx")
    (root / "badconfig" / "config.yaml").write_text("instances: 0\n")
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("log") / "server.log"
    running = start_server(["--repository", str(repo), "--max-body-mb", str(MAX_BODY_MB)], log)
    yield running
    assert running.stop() == 0, running.output()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as client:
        yield client


def reference(repo: Path, name: str, version: str, feeds: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    return create_session(repo / name / version / "model.onnx").run(feeds)


def rows(n: int, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


def still_serving(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0.1] * 8}]}
    answer = http.post("/v2/models/mlp/infer", json=body)
    assert answer.status_code == 200, answer.text


# -- health and metadata ------------------------------------------------------------------------------------------


def test_health_and_server_metadata(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "honed"
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])
    g = grpcclient.InferenceServerClient(server.grpc_url)
    assert g.is_server_live() and g.is_server_ready()
    assert g.get_server_metadata().name == "honed"


def test_model_metadata_and_ready_with_and_without_version(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    meta = client.get_model_metadata("mlp")
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("mlp", "1")["versions"] == ["1"]
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "2")
    assert not client.is_model_ready("mlp", "9")
    g = grpcclient.InferenceServerClient(server.grpc_url)
    gmeta = g.get_model_metadata("mlp", "2")
    assert list(gmeta.versions) == ["2"] and gmeta.inputs[0].datatype == "FP32"
    assert g.is_model_ready("mlp") and g.is_model_ready("mlp", "1")
    assert g.get_model_config("mlp").config.max_batch_size == MAX_BATCH
    config = client.get_model_config("mlp")
    assert config["max_batch_size"] == MAX_BATCH
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [8]}]


# -- inference ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("version", ["", "1", "2"])
def test_http_infer_equals_onnxruntime(server: RunningServer, repo: Path, binary: bool, version: str) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    x = rows(3, seed=7)
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("y", binary_data=binary)
    result = client.infer("mlp", [inp], model_version=version, outputs=[out], request_id="req-7")
    want = reference(repo, "mlp", version or "2", {"x": x})["y"]
    np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == (version or "2")


@pytest.mark.parametrize("version", ["", "1"])
def test_grpc_infer_equals_onnxruntime(server: RunningServer, repo: Path, version: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    x = rows(2, seed=3)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp], model_version=version, request_id="g-1")
    want = reference(repo, "mlp", version or "2", {"x": x})["y"]
    np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-5, atol=1e-6)
    assert result.get_response().id == "g-1"


def typed_inputs() -> dict[str, np.ndarray[Any, Any]]:
    return {
        "f16": np.array([[1.5, -2.25], [65504.0, 0.0]], dtype=np.float16),
        "f64": np.array([[1e-300, 2.5], [-3.0, 4.0]], dtype=np.float64),
        "b": np.array([[True, False], [False, True]]),
        "u8": np.array([[0, 255], [7, 8]], dtype=np.uint8),
        "i64": np.array([[-(2**62), 2**62], [0, -1]], dtype=np.int64),
        "s": np.array([["héllo", ""], ["a b", "z"]], dtype=object),
    }


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_over_http(server: RunningServer, binary: bool) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name, value in typed_inputs().items():
        datatype = models.TYPED[name][1]
        inp = httpclient.InferInput(name, list(value.shape), datatype)
        # tritonclient sends FP16 only as binary; BYTES as UTF-8 strings in JSON
        inp.set_data_from_numpy(value, binary_data=binary or datatype == "FP16")
        inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(f"{n}_out", binary_data=binary) for n in models.TYPED]
    result = client.infer("typed", inputs, outputs=outputs)
    for name, value in typed_inputs().items():
        got = result.as_numpy(f"{name}_out")
        if name == "s":
            assert [v if isinstance(v, str) else v.decode() for v in got.reshape(-1)] == list(value.reshape(-1))
        else:
            np.testing.assert_array_equal(got, value)
            assert got.dtype == value.dtype


def test_every_datatype_over_grpc(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inputs = []
    for name, value in typed_inputs().items():
        inp = grpcclient.InferInput(name, list(value.shape), models.TYPED[name][1])
        inp.set_data_from_numpy(value)
        inputs.append(inp)
    result = client.infer("typed", inputs)
    for name, value in typed_inputs().items():
        got = result.as_numpy(f"{name}_out")
        if name == "s":
            assert [v.decode() for v in got.reshape(-1)] == list(value.reshape(-1))
        else:
            np.testing.assert_array_equal(got, value)


def test_request_level_binary_data_output_with_curl_style_json(http: httpx.Client) -> None:
    body = {
        "id": "b1",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [[0.5] * 8]}],
        "parameters": {"binary_data_output": True},
    }
    answer = http.post("/v2/models/mlp/infer", json=body)
    assert answer.status_code == 200
    header_length = int(answer.headers["inference-header-content-length"])
    head = json.loads(answer.content[:header_length])
    assert head["id"] == "b1"
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert len(answer.content) == header_length + 16


def test_concurrent_callers_each_get_their_own_rows(server: RunningServer, repo: Path) -> None:
    import concurrent.futures

    client = httpclient.InferenceServerClient(server.http_url, concurrency=16)
    xs = [rows(1 + i % 3, seed=100 + i) for i in range(24)]
    pending = []
    for x in xs:
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        pending.append(client.async_infer("mlp", [inp], model_version="1"))
    session = create_session(repo / "mlp" / "1" / "model.onnx")
    with concurrent.futures.ThreadPoolExecutor(4):
        for x, handle in zip(xs, pending, strict=True):
            np.testing.assert_allclose(
                handle.get_result().as_numpy("y"), session.run({"x": x})["y"], rtol=1e-5, atol=1e-6
            )


# -- bad input ------------------------------------------------------------------------------------------------------


def _infer_body(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0.0] * 8}
    tensor.update(overrides)
    return {"inputs": [tensor]}


BAD = [
    ("malformed-json", "/v2/models/mlp/infer", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("not-an-object", "/v2/models/mlp/infer", b"[1, 2]", {}, 400, "JSON object"),
    ("wrong-name", "/v2/models/mlp/infer", _infer_body(name="nope"), {}, 400, "unknown input(s) nope"),
    ("wrong-shape", "/v2/models/mlp/infer", _infer_body(shape=[2, 4]), {}, 400, "fixes dimension 1 at 8"),
    ("wrong-rank", "/v2/models/mlp/infer", _infer_body(shape=[8]), {}, 400, "2 dimensions"),
    ("wrong-dtype", "/v2/models/mlp/infer", _infer_body(datatype="INT32", data=[0] * 8), {}, 400, "must be FP32"),
    ("element-count", "/v2/models/mlp/infer", _infer_body(data=[0.0] * 7), {}, 400, "holds 7 elements"),
    ("string-data", "/v2/models/mlp/infer", _infer_body(data=["a"] * 8), {}, 400, "not FP32"),
    ("unknown-model", "/v2/models/nope/infer", _infer_body(), {}, 404, "unknown model 'nope'"),
    ("unknown-version", "/v2/models/mlp/versions/9/infer", _infer_body(), {}, 404, "no version '9'"),
    ("unknown-metadata", "/v2/models/nope", None, {}, 404, "unknown model"),
    (
        "over-max-batch",
        "/v2/models/mlp/infer",
        _infer_body(shape=[MAX_BATCH + 1, 8], data=[0.0] * 8 * (MAX_BATCH + 1)),
        {},
        400,
        f"max batch size {MAX_BATCH}",
    ),
    (
        "binary-lengths-do-not-add-up",
        "/v2/models/mlp/infer",
        json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "parameters": {"binary_data_size": 32}}]}
        ).encode()
        + b"\0" * 16,
        {"inference-header-content-length": "SELF"},
        400,
        "claims binary_data_size 32",
    ),
    (
        "header-length-past-body",
        "/v2/models/mlp/infer",
        b"{}",
        {"inference-header-content-length": "999"},
        400,
        "Inference-Header-Content-Length is 999",
    ),
    (
        "unknown-output",
        "/v2/models/mlp/infer",
        {**_infer_body(), "outputs": [{"name": "z"}]},
        {},
        400,
        "unknown output",
    ),
    ("unknown-route", "/v3/whatever", None, {}, 404, "no route"),
    ("unloaded-model-is-reported", "/v2/models/broken/infer", _infer_body(), {}, 503, "not loaded"),
]


@pytest.mark.parametrize(("case", "path", "body", "headers", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_error(
    http: httpx.Client, case: str, path: str, body: Any, headers: dict[str, str], status: int, message: str
) -> None:
    if body is None:
        answer = http.get(path)
    else:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        if headers.get("inference-header-content-length") == "SELF":
            headers = {"inference-header-content-length": str(content.index(b"}]}") + 3)}
        answer = http.post(path, content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert message in answer.json()["error"]
    still_serving(http)


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    big = b"x" * (MAX_BODY_MB * 1024 * 1024 + 1)
    answer = http.post("/v2/models/mlp/infer", content=big)
    assert answer.status_code == 413
    assert "limit" in answer.json()["error"]
    still_serving(http)


def test_bad_input_over_grpc_maps_to_status_codes(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    x = rows(1)
    inp = grpcclient.InferInput("x", [1, 8], "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", [inp])
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    big = grpcclient.InferInput("x", [MAX_BATCH + 1, 8], "FP32")
    big.set_data_from_numpy(rows(MAX_BATCH + 1))
    with pytest.raises(InferenceServerException) as over:
        client.infer("mlp", [big])
    assert over.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "max batch size" in over.value.message()
    wrong = grpcclient.InferInput("x", [1, 8], "FP64")
    wrong.set_data_from_numpy(x.astype(np.float64))
    with pytest.raises(InferenceServerException) as dtype:
        client.infer("mlp", [wrong])
    assert dtype.value.status() == "StatusCode.INVALID_ARGUMENT"
    result = client.infer("mlp", [inp])
    assert result.as_numpy("y").shape == (1, 4)


def test_tritonclient_http_sees_errors_as_exceptions(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inp = httpclient.InferInput("x", [1, 8], "FP32")
    inp.set_data_from_numpy(rows(1))
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("nope", [inp])


# -- repository extension -------------------------------------------------------------------------------------------


def test_repository_index_reports_bad_models_with_their_reason(http: httpx.Client) -> None:
    index = {(row["name"], row.get("version", "")): row for row in http.post("/v2/repository/index").json()}
    assert index[("mlp", "1")]["state"] == "READY" and index[("mlp", "2")]["state"] == "READY"
    assert index[("typed", "1")]["state"] == "READY"
    assert index[("broken", "")]["state"] == "UNAVAILABLE"
    assert "broken" in index[("broken", "")]["reason"] or "ONNX" in index[("broken", "")]["reason"]
    assert "instances" in index[("badconfig", "")]["reason"]


def test_hot_reload_keeps_the_old_version_when_the_new_one_fails(http: httpx.Client, repo: Path) -> None:
    hot = repo / "hot"
    models.mlp(hot / "1" / "model.onnx", seed=5)
    assert http.post("/v2/repository/models/hot/load").status_code == 200
    assert http.get("/v2/models/hot").json()["versions"] == ["1"]
    (hot / "2").mkdir()
    (hot / "2" / "model.onnx").write_bytes(b"garbage")
    failed = http.post("/v2/repository/models/hot/load")
    assert failed.status_code == 400
    assert "keep serving" in failed.json()["error"]
    assert http.get("/v2/models/hot").json()["versions"] == ["1"]
    answer = http.post("/v2/models/hot/infer", json=_infer_body())
    assert answer.status_code == 200
    models.mlp(hot / "2" / "model.onnx", seed=6)
    assert http.post("/v2/repository/models/hot/load").status_code == 200
    assert http.get("/v2/models/hot").json()["versions"] == ["1", "2"]
    assert http.post("/v2/repository/models/hot/unload").status_code == 200
    assert http.get("/v2/models/hot/ready").status_code == 503
    assert http.post("/v2/models/hot/infer", json=_infer_body()).status_code == 503
    shutil.rmtree(hot)
    assert http.post("/v2/repository/models/hot/load").status_code == 404


def test_repository_over_tritonclient(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    names = {m["name"] for m in client.get_model_repository_index()}
    assert {"mlp", "typed", "broken"} <= names
    client.unload_model("typed")
    assert not client.is_model_ready("typed")
    g = grpcclient.InferenceServerClient(server.grpc_url)
    g.load_model("typed")
    assert g.is_model_ready("typed")


def test_metrics_are_prometheus_histograms(http: httpx.Client) -> None:
    still_serving(http)
    text = http.get("/metrics").text
    assert 'honed_request_duration_seconds_bucket{le="0.001",model="mlp",version="2"}' in text
    assert 'honed_requests_total{model="mlp",outcome="success",version="2"}' in text
    assert 'outcome="invalid"' in text
