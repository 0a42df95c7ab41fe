"""Both listeners of a real ``honed serve`` speak TLS 1.2 and 1.3 only, and TLS 1.2 only with ECDHE + AEAD
ciphers: a TLS 1.0/1.1 client or one offering only weak ciphers is refused at the handshake."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conformance import models
from tests.conformance.server import RunningServer, start_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA(key_type=trustme.KeyType.RSA)  # RSA, so static-RSA suites are a real option for a client
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    with open(paths["cert"], "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    return paths


@pytest.fixture(scope="module")
def server(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("repo")
    models.mlp(root / "m" / "1" / "model.onnx", seed=1)
    args = ["--repository", str(root), "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    running = start_server(args, root / "server.log", tls={"verify": ssl.create_default_context(cafile=str(pki["ca"]))})
    yield running
    assert running.stop() == 0, running.output()


def _client(pki: dict[str, Path], version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is the point
        context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        ciphers = "DEFAULT:@SECLEVEL=0"  # let this client offer the old protocol at all
    if ciphers is not None:
        context.set_ciphers(ciphers if "SECLEVEL" in ciphers else f"{ciphers}:@SECLEVEL=0")
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def _permissive_handshake(pki: dict[str, Path], client: ssl.SSLContext) -> str | None:
    """The same client against a server that accepts anything: proof the client really offers what it should."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1
    server.set_ciphers("ALL:@SECLEVEL=0")
    server.load_cert_chain(str(pki["cert"]), str(pki["key"]))
    left, right = socket.socketpair()
    left.settimeout(10)
    right.settimeout(10)
    accepted: list[ssl.SSLSocket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.wrap_socket(right, server_side=True)))
    thread.start()
    with client.wrap_socket(left, server_hostname="127.0.0.1") as tls:
        thread.join(10)
        version = tls.version()
    for sock in accepted:
        sock.close()
    right.close()
    return version


def _handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str | None]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else None


def _ports(server: RunningServer) -> list[int]:
    return [server.http_port, server.grpc_port]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_clients_are_served(
    server: RunningServer, pki: dict[str, Path], version: ssl.TLSVersion
) -> None:
    for port in _ports(server):
        got, cipher = _handshake(port, _client(pki, version))
        assert got == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        assert cipher is not None and ("GCM" in cipher or "CHACHA20" in cipher), (port, cipher)
        if version == ssl.TLSVersion.TLSv1_2:
            assert cipher.startswith("ECDHE-"), (port, cipher)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_clients_are_refused(
    server: RunningServer, pki: dict[str, Path], version: ssl.TLSVersion
) -> None:
    assert _permissive_handshake(pki, _client(pki, version)) in ("TLSv1", "TLSv1.1")
    for port in _ports(server):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(port, _client(pki, version))


@pytest.mark.parametrize(
    "ciphers", ["AES128-SHA:AES256-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"]
)
def test_a_client_with_only_weak_ciphers_is_refused(server: RunningServer, pki: dict[str, Path], ciphers: str) -> None:
    """Static-RSA key exchange (no forward secrecy) or CBC (not AEAD): no suite the server takes."""
    assert _permissive_handshake(pki, _client(pki, ssl.TLSVersion.TLSv1_2, ciphers)) == "TLSv1.2"
    for port in _ports(server):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(port, _client(pki, ssl.TLSVersion.TLSv1_2, ciphers))


def test_the_rest_context_itself_has_the_policy(pki: dict[str, Path]) -> None:
    from honed.serve.tls import TlsFiles

    context = TlsFiles(pki["cert"], pki["key"]).server_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name) for name in tls12)
