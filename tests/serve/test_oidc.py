"""The JWT verifier's own rules: settings are checked when made, a remembered token still expires on time, and a
key set with symmetric or private keys is refused."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from honed.errors import InvalidArgument
from honed.serve.oidc import InvalidToken, JwtVerifier, OidcSettings, load_jwks
from tests.idp import TestIdP


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"leeway_s": 301}, "leeway_s must be 0..300"),
        ({"leeway_s": -1}, "leeway_s must be 0..300"),
        ({"algorithms": ("HS256",)}, "honed accepts RS256, ES256, EdDSA"),
        ({"algorithms": ()}, "none given"),
        ({"audience": ()}, "audience must be a non-empty"),
        ({"issuer": " "}, "oidc.issuer"),
        ({"jwks": "http://idp.test/jwks"}, "never plain http"),
        ({"principal_claim": ""}, "principal_claim"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"issuer": "https://idp.test", "audience": ("honed",), "jwks": "jwks.json"}
    with pytest.raises(InvalidArgument, match=message):
        OidcSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_relative_files_are_taken_from_the_policy_folder(tmp_path: Path) -> None:
    doc = {"issuer": "https://idp.test", "audience": "honed", "jwks": "keys/jwks.json", "jwks_ca": "ca.pem"}
    settings = OidcSettings.from_dict(doc, tmp_path)
    assert settings.jwks == str(tmp_path / "keys" / "jwks.json")
    assert settings.jwks_ca == str(tmp_path / "ca.pem")
    assert settings.audience == ("honed",)
    assert OidcSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(InvalidArgument, match="unknown field"):
        OidcSettings.from_dict({**doc, "scope": "x"})


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "symmetric"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB", "kid": "p"}, "private key material"),
    ],
)
def test_a_key_set_with_secret_material_is_refused(tmp_path: Path, key: dict[str, str], message: str) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key]}))
    settings = OidcSettings(issuer="https://idp.test", audience=("honed",), jwks=str(tmp_path / "jwks.json"))
    with pytest.raises(InvalidArgument, match=message):
        load_jwks(settings)


def test_a_remembered_token_still_expires(tmp_path: Path) -> None:
    idp = TestIdP()
    idp.add_key("EdDSA", kid="k1")
    idp.write_jwks(tmp_path / "jwks.json")
    settings = OidcSettings(issuer=idp.issuer, audience=(idp.audience,), jwks=str(tmp_path / "jwks.json"), leeway_s=0)
    verifier = JwtVerifier(settings, load_jwks(settings))
    exp = int(time.time()) + 2
    token = idp.token("alice", kid="k1", exp=exp)
    assert asyncio.run(verifier.verify(token)) == "alice"
    assert asyncio.run(verifier.verify(token)) == "alice"  # from memory this time
    time.sleep(max(0.0, exp - time.time()) + 0.2)
    with pytest.raises(InvalidToken, match="expired"):
        asyncio.run(verifier.verify(token))


def test_claims_map_subject_and_scopes_to_grants_that_only_narrow(tmp_path: Path) -> None:
    from honed.errors import PermissionDenied
    from honed.serve.access import AccessPolicy

    idp = TestIdP()
    idp.add_key("ES256", kid="k1")
    idp.write_jwks(tmp_path / "jwks.json")
    (tmp_path / "access.yaml").write_text(
        "principals:\n  - {name: svc-a, models: ['*'], actions: [infer, read]}\n"
        f"oidc: {{issuer: '{idp.issuer}', audience: '{idp.audience}', jwks: jwks.json,\n"
        "       claims: {subject: client_id, scopes: scope}}\n",
        encoding="utf-8",
    )
    policy = AccessPolicy.from_file(tmp_path / "access.yaml")
    assert policy.oidc is not None and policy.oidc.settings.principal_claim == "client_id"

    def who(**claims: object) -> object:
        return asyncio.run(policy.authenticate(idp.token("ignored-sub", kid="k1", **claims)))

    reader = who(client_id="svc-a", scope="openid read admin")  # admin: a scope the policy does not grant
    assert policy.grant(reader, "read", "m").name == "svc-a"  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        policy.grant(reader, "infer", "m")  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        policy.grant(reader, "admin", "m")  # type: ignore[arg-type]
    both = who(client_id="svc-a", scope=["infer", "read"])  # a list (scp-style) works too
    assert policy.grant(both, "infer", "m").name == "svc-a"  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        policy.grant(who(client_id="svc-a"), "read")  # type: ignore[arg-type]  # no scope claim: nothing
    with pytest.raises(InvalidToken, match="no 'client_id' claim"):
        who(scope="read")  # the subject comes from client_id alone, never from sub


@pytest.mark.parametrize(
    ("claims", "message"),
    [({"subjects": "sub"}, "oidc.claims"), ({"scopes": ""}, "claims.scopes"), ({"subject": "oid"}, "different")],
)
def test_bad_claims_mappings_are_refused(claims: object, message: str) -> None:
    doc = {"issuer": "https://idp", "audience": "honed", "jwks": "j.json", "claims": claims}
    if message == "different":
        doc["principal_claim"] = "sub"
    with pytest.raises(InvalidArgument, match=message):
        OidcSettings.from_dict(doc)
