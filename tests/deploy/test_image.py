"""The serving image, built and run for real: ``honed deploy image`` on a local Debian base, then the container
as a Kubernetes pod runs it (its non-root user, a read-only root filesystem with a tmpfs /tmp, the model mounted
read-only, the access policy and TLS secret files root-owned 0440 and readable through the fsGroup), answered
over REST and gRPC on 127.0.0.1, and sent SIGTERM while a request is in flight, which is still answered before
the container exits 0.

Skips, with the reason, where ``docker info`` fails or the base image cannot be made (no debootstrap). The base
image stays in Docker's store and the wheels in ``.ci-cache/image-wheels`` between runs."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import trustme
from tritonclient.utils import InferenceServerException

from honed.deploy.image import Container, ImageReport, build_image
from honed.deploy.k8s import IMAGE_UID, MODEL_MOUNT
from honed.deploy.serving import ACCESS_MOUNT, TLS_MOUNT, ServingSecrets
from honed.runtime import create_session
from honed.serve.access import token_hash
from honed.serve.contract import READY_PATH
from tests.conformance import models
from tests.deploy.base_image import BASE_TAG, docker_problem, ensure_base_image

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".ci-cache" / "image-wheels"
TAG = "honed-test:image"
APP = "app-image-token-000001"

_problem = docker_problem()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_problem is not None, reason=f"no Docker: {_problem}")]


@pytest.fixture(scope="module")
def image() -> ImageReport:
    problem = ensure_base_image()
    if problem:
        pytest.skip(f"no base image {BASE_TAG}: {problem}")
    return build_image(BASE_TAG, TAG, wheelhouse=WHEELHOUSE)


def _secret_file(path: Path, data: bytes) -> None:
    """As a Secret volume holds it: root-owned, 0440, group the pod's fsGroup (the image's group)."""
    path.write_bytes(data)
    os.chown(path, 0, IMAGE_UID)
    path.chmod(0o440)


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if os.geteuid() != 0:
        pytest.skip("the secret files are made root-owned with the fsGroup's group: needs root")
    folders = {name: tmp_path_factory.mktemp(name) for name in ("models", "access", "tls", "pki")}
    for folder in folders.values():
        folder.chmod(0o755)
    models.mlp(folders["models"] / "fraud" / "1" / "model.onnx", seed=3)
    for path in (folders["models"] / "fraud", folders["models"] / "fraud" / "1"):
        path.chmod(0o755)
    (folders["models"] / "fraud" / "1" / "model.onnx").chmod(0o644)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folders["pki"] / "ca.pem"))
    _secret_file(folders["tls"] / "tls.crt", b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    _secret_file(folders["tls"] / "tls.key", leaf.private_key_pem.bytes())
    grant = f"{{name: app, token_sha256: {token_hash(APP)}, models: ['fraud*'], actions: [infer, read]}}"
    policy = f"principals:\n  - {grant}\n"
    _secret_file(folders["access"] / "access.yaml", policy.encode())
    folders["access"].chmod(0o750)
    os.chown(folders["access"], 0, IMAGE_UID)
    return folders


@pytest.fixture(scope="module")
def served(image: ImageReport, mounts: dict[str, Path]) -> Iterator[tuple[Container, ssl.SSLContext]]:
    args = ["serve", MODEL_MOUNT, "--http", "0.0.0.0:8000", "--grpc", "0.0.0.0:8001"]
    args += ServingSecrets("access", "tls").args()
    container = Container.start(
        image.tag,
        mounts=[(mounts["models"], MODEL_MOUNT), (mounts["access"], ACCESS_MOUNT), (mounts["tls"], TLS_MOUNT)],
        args=args,
        extra=["--user", f"{IMAGE_UID}:{IMAGE_UID}", "--group-add", str(IMAGE_UID)],
        scheme="https",
    )
    context = ssl.create_default_context(cafile=str(mounts["pki"] / "ca.pem"))
    try:
        container.wait_ready(context=context)
        yield container, context
    finally:
        subprocess.run(["docker", "rm", "--force", container.id], capture_output=True, check=False)


def test_the_image_is_small_runs_as_its_user_and_reports_a_cold_start(image: ImageReport) -> None:
    assert 0 < image.size_bytes < 700e6, image
    assert image.cold_start_s > 0
    user = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Config.User}}", image.tag], capture_output=True, text=True
    )
    assert user.stdout.strip() == f"{IMAGE_UID}:{IMAGE_UID}"
    listing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", image.tag, "-c", "ls /opt/honed/bin; id -u"],
        capture_output=True,
        text=True,
    )
    assert "honed" in listing.stdout.split() and "pip" not in listing.stdout.split(), listing.stdout
    assert listing.stdout.split()[-1] == str(IMAGE_UID)
    print(f"image {image.size_bytes / 1e6:.0f} MB, cold start {image.cold_start_s:.2f} s", file=sys.stderr)


def test_rest_and_grpc_over_tls_equal_onnxruntime_and_need_a_token(
    served: tuple[Container, ssl.SSLContext], mounts: dict[str, Path]
) -> None:
    container, context = served
    x = np.random.default_rng(4).standard_normal((3, 8)).astype(np.float32)
    want = create_session(mounts["models"] / "fraud" / "1" / "model.onnx").run({"x": x})["y"]
    body = {"inputs": [{"name": "x", "shape": [3, 8], "datatype": "FP32", "data": x.ravel().tolist()}]}
    base = f"https://127.0.0.1:{container.http_port}"
    with httpx.Client(base_url=base, verify=context, timeout=30) as http:
        answer = http.post("/v2/models/fraud/infer", json=body, headers={"Authorization": f"Bearer {APP}"})
        assert answer.status_code == 200, answer.text
        got = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        refused = http.post("/v2/models/fraud/infer", json=body)
        assert refused.status_code == 401, refused.text
    client = grpcclient.InferenceServerClient(
        f"127.0.0.1:{container.grpc_port}", ssl=True, root_certificates=str(mounts["pki"] / "ca.pem")
    )
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("fraud", [inp], headers={"authorization": f"Bearer {APP}"})
    np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InferenceServerException) as missing:
        client.infer("fraud", [inp])
    assert "UNAUTHENTICATED" in str(missing.value.status())


def _hold_request(container: Container, context: ssl.SSLContext, length: int) -> ssl.SSLSocket:
    """An infer request whose headers (with ``Expect: 100-continue``) are sent and whose body is not: once the
    server answers ``100 Continue``, its handler has authorized the call and is waiting for the body, in flight."""
    raw = socket.create_connection(("127.0.0.1", container.http_port), timeout=30)
    conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
    head = (
        "POST /v2/models/fraud/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {APP}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
        "Expect: 100-continue\r\n\r\n"
    )
    conn.sendall(head.encode())
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = conn.recv(4096)
        assert chunk, f"the server closed the connection: {interim!r}"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    return conn


def _response(conn: ssl.SSLSocket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in headers.items()}["content-length"])
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "the connection closed mid-response"
        body += chunk
    return int(lines[0].split()[1]), body


def _not_ready(container: Container, context: ssl.SSLContext) -> bool:
    try:
        ready = httpx.get(f"https://127.0.0.1:{container.http_port}{READY_PATH}", verify=context, timeout=2)
    except httpx.TransportError:
        return True  # the listener closed: the drain has begun
    return ready.status_code != 200


def test_the_root_filesystem_is_read_only_and_sigterm_drains_the_request_in_flight_to_exit_0(
    served: tuple[Container, ssl.SSLContext], mounts: dict[str, Path]
) -> None:
    container, context = served
    write = subprocess.run(
        ["docker", "exec", container.id, "sh", "-c", "touch /opt/honed/x || echo refused; touch /tmp/x && echo ok"],
        capture_output=True,
        text=True,
    )
    assert write.stdout.split() == ["refused", "ok"], write
    x = np.random.default_rng(9).standard_normal((2, 8)).astype(np.float32)
    want = create_session(mounts["models"] / "fraud" / "1" / "model.onnx").run({"x": x})["y"]
    body = json.dumps({"inputs": [{"name": "x", "shape": [2, 8], "datatype": "FP32", "data": x.ravel().tolist()}]})
    held = _hold_request(container, context, len(body))
    try:
        container.terminate()
        deadline = time.monotonic() + 30
        while not _not_ready(container, context):
            assert time.monotonic() < deadline, "SIGTERM did not start the drain within 30 s"
            time.sleep(0.05)
        assert container.running(), "the container exited with a request still in flight"
        held.sendall(body.encode())
        status, answer = _response(held)
    finally:
        held.close()
    assert status == 200, answer
    got = np.asarray(json.loads(answer)["outputs"][0]["data"], dtype=np.float32).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert container.wait_exit() == 0, container.final_logs


def _deploy_image(base: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "honed.cli.main", "deploy", "image", "--base", base, "--tag", "honed-test:never"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_a_base_that_is_not_local_or_has_no_python_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = _deploy_image("honed-test-missing:none")
    assert missing.returncode == 2 and "is not a local image" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    empty = "honed-test-empty:none"  # a rootfs with nothing in it: no python3
    (tmp_path / "etc").mkdir()
    tar = subprocess.run(["tar", "-C", str(tmp_path), "-c", "etc"], capture_output=True, check=True)
    subprocess.run(["docker", "import", "-", empty], input=tar.stdout, capture_output=True, check=True)
    try:
        no_python = _deploy_image(empty)
    finally:
        subprocess.run(["docker", "image", "rm", "--force", empty], capture_output=True, check=False)
    assert no_python.returncode == 2 and "has no python3" in no_python.stderr, no_python.stderr
    assert len(no_python.stderr.strip().splitlines()) == 1
