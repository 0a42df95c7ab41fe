"""Transport security for both listeners: TLS from a certificate and key, mutual TLS when a client CA is given.

The same files secure REST (uvicorn's ``ssl_*`` settings) and gRPC (``grpc.ssl_server_credentials``). With a
client CA every connection must present a certificate that CA signed, or the handshake fails before any request
is read; who may do what is then the access policy's decision (:mod:`honed.serve.access`). Every file is loaded
once up front, so a wrong path, a key that does not match its certificate or a file that is not PEM is an
:class:`~honed.errors.InvalidArgument` at start, never a listener that fails on its first client.

Both listeners speak TLS 1.2 and 1.3 only. On REST the context is honed's own (:meth:`TlsFiles.server_context`):
minimum version TLS 1.2, and for 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), no
renegotiation, no compression; TLS 1.3's suites are all AEAD. gRPC's TLS is gRPC core's, which offers no
version or cipher setting through ``grpc.ssl_server_credentials``; its defaults are the same policy (TLS 1.2
minimum, ECDHE with AES-GCM for 1.2), and the tests check both listeners alike.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from honed.errors import InvalidArgument

#: TLS 1.2 cipher suites: forward-secret key exchange (ECDHE) with an AEAD cipher, nothing else.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate (chain) and private key, and optionally the CA that signs clients."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def __post_init__(self) -> None:
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-client-ca", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise InvalidArgument(f"{flag}: no such file {path}")
        self.server_context()

    def server_context(self) -> ssl.SSLContext:
        """The REST listener's context: these files, TLS 1.2+ with :data:`TLS12_CIPHERS`, client certificates
        required when mutual."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            context.load_cert_chain(str(self.cert), str(self.key))
        except (ssl.SSLError, OSError) as exc:
            raise InvalidArgument(
                f"cannot use {self.cert} with {self.key}: {exc}; give a PEM certificate and its matching private key"
            ) from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=str(self.client_ca))
            except (ssl.SSLError, OSError) as exc:
                raise InvalidArgument(f"--tls-client-ca {self.client_ca} is not a PEM CA certificate: {exc}") from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca``."""
        return self.client_ca is not None

    def uvicorn_options(self) -> dict[str, Any]:
        """The ``uvicorn.Config`` keyword arguments for these files: uvicorn serves :meth:`server_context`."""
        context = self.server_context()
        return {"ssl_context_factory": lambda _config, _default: context}

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials for these files (client certificates required when mutual)."""
        root = Path(self.client_ca).read_bytes() if self.client_ca is not None else None
        pair = (Path(self.key).read_bytes(), Path(self.cert).read_bytes())
        return grpc.ssl_server_credentials([pair], root_certificates=root, require_client_auth=self.mutual)
