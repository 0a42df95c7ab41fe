"""JWT bearer tokens from the user's identity provider (OIDC): which tokens verify, and whose they are.

The ``oidc`` section of an access policy (:mod:`honed.serve.access`)::

    oidc:
      issuer: https://idp.example                        # the token's iss must equal it
      audience: honed                                    # or a list; the token's aud must hold one of them
      jwks: https://idp.example/.well-known/jwks.json    # or a JWKS file (relative to the policy file)
      jwks_ca: idp-ca.pem                                # optional: the CA that signs the JWKS host's certificate
      principal_claim: sub                               # the claim that names the principal (default sub)
      claims: {subject: sub, scopes: scope}              # the same as principal_claim, plus a claim of scopes
      leeway_s: 60                                       # clock skew allowed on exp/nbf/iat, 0..300 (default 60)
      algorithms: [RS256, ES256, EdDSA]                  # a subset of these three (the default)

:meth:`JwtVerifier.verify` accepts a token only when its header names one of ``algorithms`` (``none`` and every
HMAC algorithm are refused before any key is looked at, so a public key can never be used as an HMAC secret),
its ``kid`` names a public key of the JWKS whose type fits that algorithm and that the policy has not revoked, its
signature verifies, ``iss`` and ``aud`` match, and ``exp`` (required), ``nbf`` and ``iat`` hold within the leeway.
Every refusal is an :class:`InvalidToken` (401 / UNAUTHENTICATED) saying what to fix; none quotes key material.

``claims.subject`` is another name for ``principal_claim``. With ``claims.scopes`` the token's scopes (that claim:
a space-separated string, as OAuth's ``scope``, or a list, as ``scp``) narrow what its principal may do to the
actions both the policy grants it and a scope names (``infer``, ``read``, ``admin``, ``metrics``; other scopes,
such as ``openid``, grant nothing): the identity provider can take grants away from a token, never add any. A
token without the claim then holds no action at all.

Keys are loaded when the policy is, so a JWKS that cannot be read or holds no usable key fails the policy. A token
whose ``kid`` is not in the loaded set makes the verifier load the set again (the IdP may have rotated its keys),
at most once per :data:`REFETCH_INTERVAL_S`, on a worker thread: rotation rejects no valid token, and a flood of
made-up ``kid`` values cannot make the server hammer the IdP. HTTPS URLs are fetched with PyJWT's
:class:`jwt.PyJWKClient` (no redirects); plain ``http://`` is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK

from honed.errors import InvalidArgument, Unauthenticated

log = logging.getLogger("honed.serve")

ALGORITHMS = ("RS256", "ES256", "EdDSA")
"""The signature algorithms a token may use; everything else (``none``, HS*, PS*, ...) is refused."""
MAX_LEEWAY_S = 300.0
"""The most clock skew a policy may allow on ``exp``/``nbf``/``iat``."""
DEFAULT_LEEWAY_S = 60.0
REFETCH_INTERVAL_S = 10.0
"""The least time between two loads of the JWKS caused by tokens with an unknown ``kid``."""
FETCH_TIMEOUT_S = 5.0
VERIFIED_CACHE_SIZE = 4096
"""How many verified tokens a verifier remembers (see :meth:`JwtVerifier.verify`)."""
_FIELDS = {"issuer", "audience", "jwks", "jwks_ca", "principal_claim", "claims", "leeway_s", "algorithms"}
_CLAIMS = {"subject", "scopes"}
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}


class InvalidToken(Unauthenticated):
    """A JWT that does not verify: bad signature, wrong issuer or audience, expired, not yet valid, unknown key."""


class RevokedKey(InvalidToken):
    """A JWT signed with a key the access policy has revoked."""


@dataclass(frozen=True)
class OidcSettings:
    """The ``oidc`` section of a policy, validated (see the module docstring)."""

    issuer: str
    audience: tuple[str, ...]
    jwks: str
    jwks_ca: str | None = None
    principal_claim: str = "sub"
    scopes_claim: str | None = None
    """The claim whose scopes narrow a token's grants (``claims.scopes``); None: the policy's grants apply whole."""
    leeway_s: float = DEFAULT_LEEWAY_S
    algorithms: tuple[str, ...] = ALGORITHMS

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer.strip():
            raise InvalidArgument("oidc.issuer must be the identity provider's issuer, e.g. https://idp.example")
        if not self.audience or not all(isinstance(a, str) and a for a in self.audience):
            raise InvalidArgument("oidc.audience must be a non-empty string (or list of them), e.g. honed")
        if not isinstance(self.jwks, str) or not self.jwks:
            raise InvalidArgument("oidc.jwks must be a JWKS file or an https:// URL")
        if self.jwks.lower().startswith("http://"):
            raise InvalidArgument(f"oidc.jwks {self.jwks}: fetch keys over https://, never plain http")
        if self.jwks_ca is not None and (not isinstance(self.jwks_ca, str) or not self.jwks_ca):
            raise InvalidArgument("oidc.jwks_ca must be a PEM file of the CA that signs the JWKS host's certificate")
        if not isinstance(self.principal_claim, str) or not self.principal_claim:
            raise InvalidArgument("oidc.principal_claim must name a claim, e.g. sub")
        if self.scopes_claim is not None and (not isinstance(self.scopes_claim, str) or not self.scopes_claim):
            raise InvalidArgument("oidc.claims.scopes must name a claim, e.g. scope")
        leeway = self.leeway_s
        if isinstance(leeway, bool) or not isinstance(leeway, int | float) or not 0 <= leeway <= MAX_LEEWAY_S:
            raise InvalidArgument(f"oidc.leeway_s must be 0..{MAX_LEEWAY_S:g} seconds, got {leeway!r}")
        bad = [a for a in self.algorithms if a not in ALGORITHMS]
        if not self.algorithms or bad:
            raise InvalidArgument(
                f"oidc.algorithms: {', '.join(map(str, bad)) or 'none given'}; honed accepts {', '.join(ALGORITHMS)}"
            )

    @property
    def is_url(self) -> bool:
        return self.jwks.lower().startswith("https://")

    @classmethod
    def from_dict(cls, doc: Any, base: Path | None = None) -> OidcSettings:
        """Parse the section; relative ``jwks`` and ``jwks_ca`` files are taken from ``base`` (the policy's folder)."""
        if not isinstance(doc, dict):
            raise InvalidArgument("'oidc' must be a mapping with issuer, audience and jwks")
        unknown, missing = set(doc) - _FIELDS, {"issuer", "audience", "jwks"} - set(doc)
        if unknown or missing:
            parts = [f"unknown field(s) {', '.join(sorted(map(str, unknown)))}"] if unknown else []
            parts += [f"missing field(s) {', '.join(sorted(missing))}"] if missing else []
            raise InvalidArgument(f"oidc: {'; '.join(parts)}")
        audience = doc["audience"]
        audiences = tuple(audience) if isinstance(audience, list) else (audience,)
        jwks = doc["jwks"]
        if isinstance(jwks, str) and not jwks.lower().startswith(("https://", "http://")):
            jwks = str(_resolve(jwks, base))
        ca = doc.get("jwks_ca")
        algorithms = doc.get("algorithms", list(ALGORITHMS))
        if not isinstance(algorithms, list):
            raise InvalidArgument(f"oidc.algorithms must be a list, a subset of {', '.join(ALGORITHMS)}")
        claims = doc.get("claims") or {}
        if not isinstance(claims, dict) or set(claims) - _CLAIMS:
            raise InvalidArgument("oidc.claims is a mapping with 'subject' and/or 'scopes', each a claim name")
        subject: Any = claims.get("subject", doc.get("principal_claim", "sub"))
        if "principal_claim" in doc and "subject" in claims and doc["principal_claim"] != subject:
            raise InvalidArgument("oidc: principal_claim and claims.subject name different claims; give one")
        return cls(
            issuer=doc["issuer"],
            audience=audiences,
            jwks=jwks,
            jwks_ca=str(_resolve(ca, base)) if isinstance(ca, str) else ca,
            principal_claim=subject,
            scopes_claim=claims.get("scopes"),
            leeway_s=doc.get("leeway_s", DEFAULT_LEEWAY_S),
            algorithms=tuple(algorithms),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": list(self.audience),
            "jwks": self.jwks,
            "principal_claim": self.principal_claim,
            **({"claims": {"scopes": self.scopes_claim}} if self.scopes_claim is not None else {}),
            "leeway_s": self.leeway_s,
            "algorithms": list(self.algorithms),
        }
        if self.jwks_ca is not None:
            out["jwks_ca"] = self.jwks_ca
        return out


def _resolve(path: str, base: Path | None) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or base is None else base / candidate


def load_jwks(settings: OidcSettings) -> dict[str | None, PyJWK]:
    """The public keys of ``settings.jwks`` by ``kid`` (None for a key without one); InvalidArgument when the set
    cannot be read, is not a JWKS, holds private or symmetric keys, or holds no usable key."""
    where = f"oidc.jwks {settings.jwks}"
    if settings.is_url:
        try:
            context = ssl.create_default_context(cafile=settings.jwks_ca)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"oidc.jwks_ca {settings.jwks_ca}: not a readable PEM CA file: {exc}") from None
        client = jwt.PyJWKClient(settings.jwks, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S, ssl_context=context)
        try:
            doc = client.fetch_data()
        except jwt.PyJWKClientError as exc:
            raise InvalidArgument(f"{where}: cannot fetch the key set: {exc}") from None
    else:
        try:
            doc = json.loads(Path(settings.jwks).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidArgument(f"{where}: cannot read the key set: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument(f'{where}: not JSON; a JWKS is {{"keys": [...]}}') from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise InvalidArgument(f'{where}: not a JWKS; a JWKS is {{"keys": [...]}}')
    keys: dict[str | None, PyJWK] = {}
    for index, entry in enumerate(doc["keys"]):
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where}: key #{index + 1} is not a JSON object")
        kid = entry.get("kid")
        name = f"key {kid!r}" if kid is not None else f"key #{index + 1}"
        if entry.get("kty") == "oct":
            raise InvalidArgument(f"{where}: {name} is a symmetric (oct) key; publish only public keys")
        if "d" in entry:
            raise InvalidArgument(f"{where}: {name} holds private key material; publish only the public key")
        if entry.get("use", "sig") != "sig" or entry.get("kty") not in _KEY_TYPES.values():
            continue  # encryption keys and key types no accepted algorithm uses
        try:
            jwk = PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
            raise InvalidArgument(f"{where}: {name} is not a usable public key: {exc}") from None
        if jwk.algorithm_name not in settings.algorithms:
            continue
        if kid in keys:
            raise InvalidArgument(f"{where}: two keys share kid {kid!r}")
        keys[kid] = jwk
    if not keys:
        raise InvalidArgument(
            f"{where}: no signing key for {', '.join(settings.algorithms)} in the set; check the URL or file"
        )
    return keys


@dataclass(frozen=True)
class Identity:
    """What a verified token says: its principal's name and, with ``claims.scopes``, its scopes."""

    name: str
    scopes: frozenset[str] | None = None
    """None: the policy did not ask for scopes (the principal's grants apply whole)."""


def _scopes(value: Any) -> frozenset[str]:
    """A scopes claim, a space-separated string or a list of strings; anything else holds no scope."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class JwtVerifier:
    """Verifies JWTs against one identity provider's settings and key set (see the module docstring)."""

    def __init__(
        self,
        settings: OidcSettings,
        keys: Mapping[str | None, PyJWK],
        *,
        revoked_kids: frozenset[str] = frozenset(),
        loader: Callable[[OidcSettings], dict[str | None, PyJWK]] = load_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.revoked_kids = revoked_kids
        self._keys = dict(keys)
        self._loader = loader
        self._clock = clock
        self._last_refetch = -math.inf
        self._refetch_lock: asyncio.Lock | None = None
        self._verified: OrderedDict[bytes, tuple[Identity, float]] = OrderedDict()

    @classmethod
    def load(
        cls,
        settings: OidcSettings,
        *,
        revoked_kids: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
    ) -> JwtVerifier:
        """A verifier with the key set loaded now (blocking: a file read or one HTTPS fetch)."""
        return cls(settings, load_jwks(settings), revoked_kids=revoked_kids, clock=clock)

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(self._keys)

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        """Whether ``token`` has a JWT's three dot-separated parts (opaque honed tokens have none)."""
        return token.count(".") == 2

    def remembered(self, token: str) -> Identity | None:
        """The identity of ``token`` when it verified before and has not expired since; None otherwise (then
        only :meth:`verify` can tell). Never blocks: what a refusal decided from the headers alone relies on."""
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(digest)
        if cached is None:
            return None
        if time.time() <= cached[1]:
            self._verified.move_to_end(digest)
            return cached[0]
        del self._verified[digest]
        return None

    async def verify(self, token: str) -> str:
        """The principal name ``token`` carries (its :attr:`OidcSettings.principal_claim`), or InvalidToken."""
        return (await self.identity(token)).name

    async def identity(self, token: str) -> Identity:
        """Who ``token`` names and, with ``claims.scopes``, the scopes it carries; or InvalidToken.

        A token that verified is remembered, byte for byte, until its ``exp`` (plus the leeway) passes, so a client
        that sends one token many times (and a gRPC call, checked before and after its message is parsed) pays for
        the signature once; the memory goes with this verifier on a reload and is cleared when the key set is."""
        remembered = self.remembered(token)
        if remembered is not None:
            return remembered
        digest = hashlib.sha256(token.encode()).digest()  # memory per token stays small however large it is
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in settings.algorithms:
            raise InvalidToken(
                f"the token is signed with alg {alg!r}; this server accepts {', '.join(settings.algorithms)} only"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's kid must be a string")
        if kid is not None and kid in self.revoked_kids:
            raise RevokedKey(f"the token is signed with key {kid!r}, which this server has revoked; get a new token")
        key = await self._key(kid)
        if key.algorithm_name != alg:
            raise InvalidToken(f"the token's alg {alg} does not fit its key {kid!r} ({key.algorithm_name})")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(settings.audience),
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(self._why(exc)) from None
        name = claims.get(settings.principal_claim)
        if not isinstance(name, str) or not name:
            raise InvalidToken(f"the token carries no {settings.principal_claim!r} claim naming its principal")
        found = Identity(name, _scopes(claims.get(settings.scopes_claim)) if settings.scopes_claim else None)
        self._verified[digest] = (found, float(claims["exp"]) + settings.leeway_s)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return found

    async def _key(self, kid: str | None) -> PyJWK:
        key = self._keys.get(kid) if kid is not None or len(self._keys) != 1 else next(iter(self._keys.values()))
        if key is not None:
            return key
        if kid is None:
            raise InvalidToken("the token's header names no key (kid); the identity provider publishes several")
        if self._refetch_lock is None:
            self._refetch_lock = asyncio.Lock()
        async with self._refetch_lock:
            if kid not in self._keys and self._clock() - self._last_refetch >= REFETCH_INTERVAL_S:
                self._last_refetch = self._clock()
                try:
                    self._keys = await asyncio.to_thread(self._loader, self.settings)
                    self._verified.clear()  # a key the IdP withdrew must not live on in remembered tokens
                except InvalidArgument as exc:  # the IdP is unreachable or serves a broken set: keep our keys
                    log.warning("could not refresh the identity provider's keys for kid %r: %s", kid, exc)
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken(
                f"the token is signed with key {kid!r}, which the identity provider's key set does not hold; "
                "get a token from the configured issuer"
            )
        return key

    def _why(self, exc: jwt.PyJWTError) -> str:
        s = self.settings
        leeway = f"{s.leeway_s:g} s"
        if isinstance(exc, jwt.ExpiredSignatureError):
            return f"the token has expired (exp is more than {leeway} in the past); get a fresh token"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return f"the token is not valid yet (nbf or iat more than {leeway} ahead); check the client's clock"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"the token's issuer (iss) is not {s.issuer}"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"the token's audience (aud) does not name {' or '.join(s.audience)}"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"the token has no {exc.claim!r} claim"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "the token's signature does not verify with the identity provider's key"
        if isinstance(exc, jwt.DecodeError):
            return "the bearer token is not a well-formed JWT"
        return f"the token was refused: {exc}"


__all__ = [
    "ALGORITHMS",
    "MAX_LEEWAY_S",
    "REFETCH_INTERVAL_S",
    "Identity",
    "InvalidToken",
    "JwtVerifier",
    "OidcSettings",
    "RevokedKey",
    "load_jwks",
]
