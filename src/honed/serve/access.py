"""Who may call the server and what they may do: principals (bearer tokens, or JWTs from an identity provider) with
per-model, per-action grants.

An access policy (``honed serve --access FILE``, YAML or JSON) lists principals. Each holds the sha256 of its
bearer token (the token itself is never stored; ``honed access token`` makes one), the models it may use as
shell-style patterns, and the actions it may take:

=========  ====================================================================================
action     what it allows
=========  ====================================================================================
infer      ``POST /v2/models/{m}/infer``, gRPC ``ModelInfer``
read       server metadata, model metadata / ready / config, repository index
admin      repository load and unload
metrics    ``GET /metrics``
=========  ====================================================================================

Every request but the health probes (``/v2/health/live``, ``/v2/health/ready`` and their gRPC twins, which
orchestrators call without credentials) must carry ``Authorization: Bearer <token>`` (gRPC metadata
``authorization``), once: :func:`credentials` is the one reading of the header both transports use. A missing,
malformed or unknown token is :class:`~honed.errors.Unauthenticated` (401 / UNAUTHENTICATED); two or more
``Authorization`` headers are :class:`RepeatedCredentials` (400 / INVALID_ARGUMENT), since a proxy that appends one
must not decide which identity counts; a known principal outside its grants is
:class:`~honed.errors.PermissionDenied` (403 / PERMISSION_DENIED). The decision never depends on anything else the
client sends. A principal sees only the models it holds a grant on: :meth:`Principal.sees` filters the repository
index, and metadata of a model outside its grants is refused like any other call on it.

Example::

    principals:
      - name: fraud-app
        token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        models: ["fraud-*"]
        actions: [infer, read]
      - name: prometheus
        token_sha256: ...
        models: []
        actions: [metrics]
      - name: batch-job            # no token_sha256: this principal signs in with a JWT from the IdP
        models: ["*"]
        actions: [infer]
    oidc: {issuer: https://idp.example, audience: honed, jwks: jwks.json,  # honed.serve.oidc
           claims: {subject: sub, scopes: scope}}
    limits: {default: {rps: 50, burst: 100}}                                 # honed.serve.limits
    revoked: {principals: [old-app], kids: [2024-key]}

Besides the principals, a policy may hold an ``oidc`` section (:mod:`honed.serve.oidc`): a bearer token that is a
JWT from that identity provider names its principal by a claim (``sub`` by default), and the principal entry of
that name, which must have no ``token_sha256``, gives its grants; a valid JWT naming no such entry is 403. A token
principal can never be reached through a JWT, so the IdP cannot mint an identity the policy gave a token. The
``limits`` section sets per-identity rate limits (:mod:`honed.serve.limits`); ``revoked`` lists principals whose
requests are refused whatever credential they present, and JWKS key ids whose tokens are refused (401 both).
:meth:`AccessPolicy.authenticate` and :meth:`AccessPolicy.grant` decide every request;
:class:`honed.serve.policy_reload.PolicyReloader` swaps in a new policy without a restart.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from honed.errors import InvalidArgument, PermissionDenied, Unauthenticated
from honed.serve.contract import AUTH_REASONS
from honed.serve.limits import RateLimits
from honed.serve.oidc import Identity, InvalidToken, JwtVerifier, OidcSettings, RevokedKey

ACTIONS = ("infer", "read", "admin", "metrics")
"""Everything a grant can allow."""

REFUSAL_REASONS = AUTH_REASONS
"""Why a request was refused: no token, another scheme, a token no principal holds, a JWT that does not verify,
revoked credentials, or a principal outside its grants."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"name", "token_sha256", "models", "actions"}
_SECTIONS = {"principals", "oidc", "limits", "revoked"}


def token_hash(token: str) -> str:
    """The sha256 (hex) of a bearer token: what a policy file stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class MalformedCredentials(Unauthenticated):
    """Credentials in a form this server does not take (another scheme than Bearer, or no token after it)."""


class RevokedCredentials(Unauthenticated):
    """Credentials of a principal the access policy has revoked."""


class RepeatedCredentials(InvalidArgument):
    """More than one ``Authorization`` header (gRPC: ``authorization`` metadata entry) on one request."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (None when absent); other schemes are refused."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MalformedCredentials("send credentials as 'Authorization: Bearer <token>'")
    return token


def credentials(values: Sequence[str]) -> str | None:
    """The bearer token of a request's ``Authorization`` values (every one it sent, in order): None for none,
    :class:`RepeatedCredentials` for more than one, whatever :func:`bearer_token` says for one."""
    if len(values) > 1:
        raise RepeatedCredentials(
            f"the request carries {len(values)} Authorization headers; send exactly one 'Authorization: Bearer <token>'"
        )
    return bearer_token(values[0] if values else None)


@dataclass(frozen=True)
class Principal:
    """One caller the policy knows, and what it may do."""

    name: str
    token_sha256: str | None
    """The sha256 of its bearer token; None for a principal that signs in with a JWT (``oidc``)."""
    models: tuple[str, ...]
    actions: frozenset[str]

    def may(self, action: str, model: str | None) -> bool:
        if action not in self.actions:
            return False
        return model is None or any(fnmatchcase(model, pattern) for pattern in self.models)

    def sees(self, model: str) -> bool:
        """Whether ``model`` shows in this principal's repository index: it holds some grant on it."""
        return any(fnmatchcase(model, pattern) for pattern in self.models)


class AccessPolicy:
    """The principals of one server, and how they sign in; :meth:`authenticate` and :meth:`grant` decide."""

    def __init__(
        self,
        principals: Iterable[Principal],
        *,
        oidc: JwtVerifier | None = None,
        limits: RateLimits | None = None,
        revoked_principals: Iterable[str] = (),
        source: Path | None = None,
    ) -> None:
        self.principals = tuple(principals)
        self.oidc = oidc
        self.limits = limits or RateLimits()
        self.revoked_principals = frozenset(revoked_principals)
        self.source = source
        """The file this policy was read from (None: built in code)."""
        if not self.principals:
            raise InvalidArgument("an access policy needs at least one principal")
        self._by_hash: dict[str, Principal] = {}
        self._by_name: dict[str, Principal] = {}
        for p in self.principals:
            if p.name in self._by_name:
                raise InvalidArgument(f"access policy: principal {p.name!r} is listed twice")
            if p.token_sha256 is None and oidc is None:
                raise InvalidArgument(
                    f"access policy: principal {p.name!r} has no token_sha256 and the policy has no 'oidc' section, "
                    "so nothing could sign in as it; give it a token (honed access token) or configure oidc"
                )
            if p.token_sha256 is not None and p.token_sha256 in self._by_hash:
                raise InvalidArgument(
                    f"access policy: principals {self._by_hash[p.token_sha256].name!r} and {p.name!r} share a token"
                )
            self._by_name[p.name] = p
            if p.token_sha256 is not None:
                self._by_hash[p.token_sha256] = p

    @property
    def watched_files(self) -> tuple[Path, ...]:
        """The files this policy was built from (the policy and a JWKS file): a change to any means reload."""
        files = [self.source] if self.source is not None else []
        if self.oidc is not None and not self.oidc.settings.is_url:
            files.append(Path(self.oidc.settings.jwks))
        return tuple(files)

    @classmethod
    def from_file(cls, path: str | Path, *, clock: Callable[[], float] = time.monotonic) -> AccessPolicy:
        """Read a policy from YAML or JSON (and its JWKS, when it has an ``oidc`` section); any mistake is an
        :class:`InvalidArgument` naming the file."""
        path = Path(path)
        doc = read_policy_document(path)
        try:
            return cls.from_dict(doc, base=path.parent, clock=clock, source=path)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}: {exc}") from None

    @classmethod
    def from_dict(
        cls,
        doc: Any,
        *,
        base: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        source: Path | None = None,
    ) -> AccessPolicy:
        """A policy from its document; an ``oidc`` section loads its key set now (relative files from ``base``)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("principals"), list) or set(doc) - _SECTIONS:
            raise InvalidArgument(
                "an access policy is a mapping with 'principals' (a list) and optionally 'oidc', 'limits' and 'revoked'"
            )
        principals = [_principal(i, entry) for i, entry in enumerate(doc["principals"])]
        revoked = doc.get("revoked") or {}
        if not isinstance(revoked, dict) or set(revoked) - {"principals", "kids"}:
            raise InvalidArgument("'revoked' is a mapping with 'principals' and/or 'kids', each a list of names")
        names, kids = revoked.get("principals") or [], revoked.get("kids") or []
        for what, values in (("principals", names), ("kids", kids)):
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise InvalidArgument(f"revoked.{what} must be a list of names")
        limits = RateLimits.from_dict(doc.get("limits"))
        verifier = None
        if doc.get("oidc") is not None:
            settings = OidcSettings.from_dict(doc["oidc"], base)
            verifier = JwtVerifier.load(settings, revoked_kids=frozenset(kids), clock=clock)
        elif kids:
            raise InvalidArgument("revoked.kids names JWKS keys, but the policy has no 'oidc' section")
        return cls(principals, oidc=verifier, limits=limits, revoked_principals=names, source=source)

    def _static(self, token: str | None) -> Principal:
        if token is None:
            raise Unauthenticated("this server requires credentials: send 'Authorization: Bearer <token>'")
        principal = self._by_hash.get(token_hash(token))
        if principal is None:
            raise Unauthenticated("the bearer token is not one this server knows")
        return self._not_revoked(principal)

    def _not_revoked(self, principal: Principal) -> Principal:
        if principal.name in self.revoked_principals:
            raise RevokedCredentials(f"the credentials of principal {principal.name!r} have been revoked")
        return principal

    def _is_jwt(self, token: str | None) -> bool:
        return (
            self.oidc is not None
            and token is not None
            and JwtVerifier.looks_like_jwt(token)
            and token_hash(token) not in self._by_hash
        )

    def _jwt_principal(self, oidc: JwtVerifier, identity: Identity) -> Principal:
        name = identity.name
        principal = self._by_name.get(name)
        if principal is None or principal.token_sha256 is not None:
            claim = oidc.settings.principal_claim
            raise PermissionDenied(f"the token's {claim} {name!r} holds no grant on this server")
        principal = self._not_revoked(principal)
        if identity.scopes is None:
            return principal
        return replace(principal, actions=principal.actions & identity.scopes)  # the token's scopes only narrow

    async def authenticate(self, token: str | None) -> Principal:
        """The principal ``token`` names: a known bearer token's, or a verified JWT's; else Unauthenticated (or
        PermissionDenied for a valid JWT naming no principal of this policy)."""
        oidc = self.oidc
        if oidc is not None and self._is_jwt(token):
            assert token is not None
            return self._jwt_principal(oidc, await oidc.identity(token))
        return self._static(token)

    def authenticate_now(self, token: str | None) -> Principal | None:
        """What :meth:`authenticate` decides, without waiting: None for a JWT that has not verified before (only
        :meth:`authenticate` can check its signature, perhaps after fetching keys)."""
        oidc = self.oidc
        if oidc is not None and self._is_jwt(token):
            assert token is not None
            identity = oidc.remembered(token)
            return None if identity is None else self._jwt_principal(oidc, identity)
        return self._static(token)

    def grant(self, principal: Principal, action: str, model: str | None = None) -> Principal:
        """``principal`` when it may take ``action`` (on ``model``); else PermissionDenied."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if not principal.may(action, model):
            target = f" on model {model!r}" if model is not None else ""
            raise PermissionDenied(f"principal {principal.name!r} is not allowed to {action}{target}")
        return principal

    def authorize(self, token: str | None, action: str, model: str | None = None) -> Principal:
        """The principal a bearer token (not a JWT: see :meth:`authenticate`) names, when it may take ``action``
        (on ``model``); else Unauthenticated/Denied."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        return self.grant(self._static(token), action, model)


def read_policy_document(path: Path) -> Any:
    """The parsed YAML/JSON of a policy file, unchecked; InvalidArgument when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot read the access policy {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"the access policy {path} is not valid YAML/JSON: it is not UTF-8 text") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"the access policy {path} is not valid YAML/JSON: {exc}") from None


def refusal_reason(exc: Exception, token: str | None) -> str:
    """The ``reason`` label for a refused request (see :data:`REFUSAL_REASONS`)."""
    if isinstance(exc, PermissionDenied):
        return "forbidden"
    if isinstance(exc, MalformedCredentials | RepeatedCredentials):
        return "malformed"
    if isinstance(exc, RevokedCredentials | RevokedKey):
        return "revoked"
    if isinstance(exc, InvalidToken):
        return "invalid"
    return "missing" if token is None else "unknown"


def _principal(index: int, entry: Any) -> Principal:
    where = f"principal #{index + 1}"
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where} must be a mapping with {', '.join(sorted(_FIELDS))}")
    unknown = set(entry) - _FIELDS
    missing = {"name", "actions"} - set(entry)
    if unknown or missing:
        parts = [f"unknown field(s) {', '.join(sorted(unknown))}"] if unknown else []
        parts += [f"missing field(s) {', '.join(sorted(missing))}"] if missing else []
        raise InvalidArgument(f"{where}: {'; '.join(parts)}")
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(f"{where}: 'name' must be a non-empty string")
    where = f"principal {name!r}"
    digest = entry.get("token_sha256")
    if digest is not None and (not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower())):
        raise InvalidArgument(
            f"{where}: 'token_sha256' must be the 64 hex digits of the token's sha256 (see 'honed access token')"
        )
    actions = entry["actions"]
    if not isinstance(actions, list) or not actions or not all(isinstance(a, str) for a in actions):
        raise InvalidArgument(f"{where}: 'actions' must be a non-empty list of {', '.join(ACTIONS)}")
    bad = sorted(set(actions) - set(ACTIONS))
    if bad:
        raise InvalidArgument(f"{where}: unknown action(s) {', '.join(bad)}; use {', '.join(ACTIONS)}")
    models = entry.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise InvalidArgument(f"{where}: 'models' must be a list of model names or patterns such as 'fraud-*'")
    if not models and set(actions) & {"infer", "admin"}:
        raise InvalidArgument(f"{where}: 'infer' and 'admin' need at least one entry in 'models' ('*' for all)")
    return Principal(name.strip(), digest.lower() if digest else None, tuple(models), frozenset(actions))
