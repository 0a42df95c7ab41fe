"""A real, small identity provider for tests: RSA / EC P-256 / Ed25519 signing keys made with cryptography, a JWKS
of their public halves (as a file, or over a real local HTTPS server with a trustme certificate), and JWTs signed
by PyJWT, plus the forged tokens an attacker would try (``alg: none``, HS256 keyed with the public key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test"
AUDIENCE = "honed"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        to_jwk = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[self.alg].to_jwk
        jwk: dict[str, Any] = to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TestIdP:
    """Keys, a published key set and token minting; ``published`` is what the JWKS shows now."""

    __test__ = False  # not a pytest test class

    def __init__(self, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys: dict[str, SigningKey] = {}
        self.published: list[str] = []

    def add_key(self, alg: str, kid: str | None = None, *, publish: bool = True) -> SigningKey:
        if alg == "RS256":
            private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        key = SigningKey(kid or f"{alg.lower()}-{len(self.keys) + 1}", alg, private)
        self.keys[key.kid] = key
        if publish:
            self.published.append(key.kid)
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.keys[kid].public_jwk() for kid in self.published]}

    def write_jwks(self, path: Path) -> Path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.jwks()), encoding="utf-8")
        tmp.replace(path)  # atomic: a poll never reads half a key set
        return path

    def claims(self, sub: str, *, lifetime_s: float = 300.0, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "exp": now + int(lifetime_s),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, sub: str, kid: str, *, lifetime_s: float = 300.0, **overrides: Any) -> str:
        """A token for ``sub`` signed by key ``kid``; ``overrides`` replace claims (None drops one)."""
        key = self.keys[kid]
        return jwt.encode(
            self.claims(sub, lifetime_s=lifetime_s, **overrides), key.private, algorithm=key.alg, headers={"kid": kid}
        )

    def forge_none(self, sub: str, kid: str) -> str:
        """An unsigned token (``alg: none``) claiming to come from key ``kid``."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
        return f"{header}.{_b64(json.dumps(self.claims(sub)).encode())}."

    def forge_hs256(self, sub: str, kid: str) -> str:
        """A token "signed" with HS256, the public key's PEM as the HMAC secret (the classic algorithm confusion)."""
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        body = _b64(json.dumps(self.claims(sub)).encode())
        mac = hmac.new(self.keys[kid].public_pem(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(mac)}"


@dataclass
class JwksServer:
    url: str
    ca_file: Path
    fetches: list[float]


@contextmanager
def serve_jwks(idp: TestIdP, folder: Path) -> Iterator[JwksServer]:
    """Serve ``idp``'s current key set at ``https://127.0.0.1:PORT/jwks.json`` with a trustme certificate; the
    ``ca_file`` verifies it and ``fetches`` records each GET."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = folder / "idp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    fetches: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(time.monotonic())
            body = json.dumps(idp.jwks()).encode()
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield JwksServer(f"https://127.0.0.1:{httpd.server_address[1]}/jwks.json", ca_file, fetches)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
