"""Transport security for both listeners: TLS from a certificate and key, mutual TLS when a client CA is given.

The same files secure REST (uvicorn's ``ssl_*`` settings) and gRPC (``grpc.ssl_server_credentials``). With a
client CA every connection must present a certificate that CA signed, or the handshake fails before any request
is read; who may do what is then the access policy's decision (:mod:`honed.serve.access`). Every file is loaded
once up front, so a wrong path, a key that does not match its certificate or a file that is not PEM is an
:class:`~honed.errors.InvalidArgument` at start, never a listener that fails on its first client.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from honed.errors import InvalidArgument


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
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
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

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca``."""
        return self.client_ca is not None

    def uvicorn_options(self) -> dict[str, Any]:
        """The ``uvicorn.Config`` keyword arguments for these files."""
        options: dict[str, Any] = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            options.update(ssl_ca_certs=str(self.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        return options

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials for these files (client certificates required when mutual)."""
        root = Path(self.client_ca).read_bytes() if self.client_ca is not None else None
        pair = (Path(self.key).read_bytes(), Path(self.cert).read_bytes())
        return grpc.ssl_server_credentials([pair], root_certificates=root, require_client_auth=self.mutual)
