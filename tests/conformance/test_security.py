"""Zero trust end to end: a real ``honed serve`` over mutual TLS with an access policy, driven by httpx and the
official tritonclient gRPC client. Every call but the health probes needs a known token and a matching grant;
a client without a certificate from the client CA never gets a request through."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import trustme
from tritonclient.utils import InferenceServerException

from honed.runtime import create_session
from honed.serve.access import token_hash
from tests.conformance import models
from tests.conformance.server import RunningServer, start_server

APP, OPS = "app-secret-token-0001", "ops-secret-token-0002"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "client_ca", "client")}
    server_ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf = server_ca.issue_cert("127.0.0.1", "localhost")
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    with open(paths["cert"], "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    client_ca.cert_pem.write_to_path(str(paths["client_ca"]))
    client_ca.issue_cert("client@example.com").private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return paths


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    models.mlp(root / "fraud" / "1" / "model.onnx", seed=1)
    models.mlp(root / "credit" / "1" / "model.onnx", seed=2)
    return root


@pytest.fixture(scope="module")
def server(repo: Path, pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("policy")
    policy = folder / "access.yaml"
    policy.write_text(
        "principals:\n"
        f"  - {{name: app, token_sha256: {token_hash(APP)}, models: ['fraud*'], actions: [infer, read]}}\n"
        f"  - {{name: ops, token_sha256: {token_hash(OPS)}, actions: [metrics, read]}}\n"
    )
    args = ["--repository", str(repo), "--access", str(policy)]
    args += ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), "--tls-client-ca", str(pki["client_ca"])]
    running = start_server(args, folder / "server.log", tls=_client_options(pki))
    yield running
    assert running.stop() == 0, running.output()


def _client_options(pki: dict[str, Path]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["client"]))
    return {"verify": context}


@pytest.fixture(scope="module")
def http(server: RunningServer, pki: dict[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30, **_client_options(pki)) as client:
        yield client


def _body(seed: int = 0) -> tuple[dict[str, Any], np.ndarray[Any, Any]]:
    x = np.random.default_rng(seed).standard_normal((2, 8)).astype(np.float32)
    return {"inputs": [{"name": "x", "shape": [2, 8], "datatype": "FP32", "data": x.ravel().tolist()}]}, x


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_probes_need_no_token(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").json() == {"ready": True}


def test_infer_with_a_granted_token_equals_onnxruntime(http: httpx.Client, repo: Path) -> None:
    body, x = _body(1)
    answer = http.post("/v2/models/fraud/infer", json=body, headers=_auth(APP))
    assert answer.status_code == 200, answer.text
    want = create_session(repo / "fraud" / "1" / "model.onnx").run({"x": x})["y"]
    got = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_missing_or_unknown_tokens_get_401_with_a_bearer_challenge(http: httpx.Client) -> None:
    body, _ = _body()
    for headers in ({}, _auth("not-a-known-token"), {"Authorization": "Basic dXNlcjpwYXNz"}):
        answer = http.post("/v2/models/fraud/infer", json=body, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "error" in answer.json()
    assert http.get("/v2/models/fraud").status_code == 401
    assert http.get("/metrics").status_code == 401
    assert http.post("/v2/repository/no-such-route").status_code == 401
    assert http.post("/v2/repository/no-such-route", headers=_auth(OPS)).status_code == 404


def test_a_known_principal_outside_its_grants_gets_403(http: httpx.Client) -> None:
    body, _ = _body()
    assert http.post("/v2/models/credit/infer", json=body, headers=_auth(APP)).status_code == 403
    assert http.get("/v2/models/credit", headers=_auth(APP)).status_code == 403
    assert http.post("/v2/models/fraud/infer", json=body, headers=_auth(OPS)).status_code == 403
    assert http.post("/v2/repository/models/fraud/unload", headers=_auth(APP)).status_code == 403
    assert http.get("/v2/models/fraud/ready", headers=_auth(APP)).status_code == 200


def test_refusals_are_counted_by_reason(http: httpx.Client) -> None:
    http.post("/v2/models/fraud/infer", json=_body()[0])
    text = http.get("/metrics", headers=_auth(OPS)).text
    counts = {
        line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("honed_auth_refusals_total{")
    }
    assert counts.get("missing", 0) >= 1 and counts.get("forbidden", 0) >= 1, text


def test_a_client_without_a_certificate_is_refused_at_the_handshake(
    server: RunningServer, pki: dict[str, Path]
) -> None:
    no_cert = ssl.create_default_context(cafile=str(pki["ca"]))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base}/v2/health/live", verify=no_cert, timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.http_port}/v2/health/live", timeout=10)  # plain HTTP on a TLS port


def _grpc_client(server: RunningServer, pki: dict[str, Path]) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(
        server.grpc_url,
        ssl=True,
        root_certificates=str(pki["ca"]),
        private_key=str(pki["client"]),
        certificate_chain=str(pki["client"]),
    )


def test_grpc_over_mutual_tls_with_a_token(server: RunningServer, pki: dict[str, Path], repo: Path) -> None:
    client = _grpc_client(server, pki)
    assert client.is_server_live()
    _, x = _body(2)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("fraud", [inp], headers={"authorization": f"Bearer {APP}"})
    want = create_session(repo / "fraud" / "1" / "model.onnx").run({"x": x})["y"]
    np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InferenceServerException) as missing:
        client.infer("fraud", [inp])
    assert "UNAUTHENTICATED" in str(missing.value.status())
    with pytest.raises(InferenceServerException) as denied:
        client.infer("credit", [inp], headers={"authorization": f"Bearer {APP}"})
    assert "PERMISSION_DENIED" in str(denied.value.status())
    with pytest.raises(InferenceServerException) as metadata:
        client.get_model_metadata("fraud")
    assert "UNAUTHENTICATED" in str(metadata.value.status())
