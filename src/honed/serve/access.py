"""Who may call the server and what they may do: bearer-token principals with per-model, per-action grants.

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
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from honed.errors import InvalidArgument, PermissionDenied, Unauthenticated
from honed.serve.contract import AUTH_REASONS

ACTIONS = ("infer", "read", "admin", "metrics")
"""Everything a grant can allow."""

REFUSAL_REASONS = AUTH_REASONS
"""Why a request was refused: no token, a token no principal holds, or a principal outside its grants."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"name", "token_sha256", "models", "actions"}


def token_hash(token: str) -> str:
    """The sha256 (hex) of a bearer token: what a policy file stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class MalformedCredentials(Unauthenticated):
    """Credentials in a form this server does not take (another scheme than Bearer, or no token after it)."""


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
    token_sha256: str
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
    """The principals of one server; :meth:`authorize` is the only decision point."""

    def __init__(self, principals: Iterable[Principal]) -> None:
        self.principals = tuple(principals)
        if not self.principals:
            raise InvalidArgument("an access policy needs at least one principal")
        self._by_hash: dict[str, Principal] = {}
        names: set[str] = set()
        for p in self.principals:
            if p.name in names:
                raise InvalidArgument(f"access policy: principal {p.name!r} is listed twice")
            if p.token_sha256 in self._by_hash:
                raise InvalidArgument(
                    f"access policy: principals {self._by_hash[p.token_sha256].name!r} and {p.name!r} share a token"
                )
            names.add(p.name)
            self._by_hash[p.token_sha256] = p

    @classmethod
    def from_file(cls, path: str | Path) -> AccessPolicy:
        """Read a policy from YAML or JSON; any mistake is an :class:`InvalidArgument` naming the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgument(f"cannot read the access policy {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise InvalidArgument(f"the access policy {path} is not valid YAML/JSON: it is not UTF-8 text") from None
        try:
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise InvalidArgument(f"the access policy {path} is not valid YAML/JSON: {exc}") from None
        try:
            return cls.from_dict(doc)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, doc: Any) -> AccessPolicy:
        if not isinstance(doc, dict) or set(doc) != {"principals"} or not isinstance(doc["principals"], list):
            raise InvalidArgument("an access policy is a mapping with one key, 'principals', holding a list")
        return cls(_principal(i, entry) for i, entry in enumerate(doc["principals"]))

    def authorize(self, token: str | None, action: str, model: str | None = None) -> Principal:
        """The principal ``token`` names, when it may take ``action`` (on ``model``); else Unauthenticated/Denied."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if token is None:
            raise Unauthenticated("this server requires credentials: send 'Authorization: Bearer <token>'")
        principal = self._by_hash.get(token_hash(token))
        if principal is None:
            raise Unauthenticated("the bearer token is not one this server knows")
        if not principal.may(action, model):
            target = f" on model {model!r}" if model is not None else ""
            raise PermissionDenied(f"principal {principal.name!r} is not allowed to {action}{target}")
        return principal


def refusal_reason(exc: Exception, token: str | None) -> str:
    """The ``reason`` label for a refused request (see :data:`REFUSAL_REASONS`)."""
    if isinstance(exc, PermissionDenied):
        return "forbidden"
    if isinstance(exc, MalformedCredentials | RepeatedCredentials):
        return "malformed"
    return "missing" if token is None else "unknown"


def _principal(index: int, entry: Any) -> Principal:
    where = f"principal #{index + 1}"
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where} must be a mapping with {', '.join(sorted(_FIELDS))}")
    unknown = set(entry) - _FIELDS
    missing = {"name", "token_sha256", "actions"} - set(entry)
    if unknown or missing:
        parts = [f"unknown field(s) {', '.join(sorted(unknown))}"] if unknown else []
        parts += [f"missing field(s) {', '.join(sorted(missing))}"] if missing else []
        raise InvalidArgument(f"{where}: {'; '.join(parts)}")
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(f"{where}: 'name' must be a non-empty string")
    where = f"principal {name!r}"
    digest = entry["token_sha256"]
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
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
    return Principal(name.strip(), digest.lower(), tuple(models), frozenset(actions))
