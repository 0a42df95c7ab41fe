"""The access policy: parsing fails loudly, and authorize() lets through exactly what each grant allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.errors import InvalidArgument, PermissionDenied, Unauthenticated
from honed.serve.access import AccessPolicy, bearer_token, refusal_reason, token_hash

APP, OPS = "app-token-0123456789", "ops-token-0123456789"


def _policy() -> AccessPolicy:
    return AccessPolicy.from_dict(
        {
            "principals": [
                {"name": "app", "token_sha256": token_hash(APP), "models": ["fraud-*"], "actions": ["infer", "read"]},
                {"name": "ops", "token_sha256": token_hash(OPS), "actions": ["metrics", "read"]},
            ]
        }
    )


def test_a_principal_gets_what_its_grant_allows_and_nothing_else() -> None:
    policy = _policy()
    assert policy.authorize(APP, "infer", "fraud-scorer").name == "app"
    assert policy.authorize(APP, "read", "fraud-v2").name == "app"
    assert policy.authorize(APP, "read").name == "app"  # server metadata names no model
    with pytest.raises(PermissionDenied, match="not allowed to infer on model 'credit'"):
        policy.authorize(APP, "infer", "credit")
    with pytest.raises(PermissionDenied, match="admin"):
        policy.authorize(APP, "admin", "fraud-scorer")
    assert policy.authorize(OPS, "metrics").name == "ops"
    with pytest.raises(PermissionDenied):
        policy.authorize(OPS, "read", "fraud-scorer")  # no model patterns: no model at all


def test_missing_and_unknown_tokens_are_unauthenticated() -> None:
    policy = _policy()
    with pytest.raises(Unauthenticated, match="Bearer") as missing:
        policy.authorize(None, "infer", "fraud-scorer")
    with pytest.raises(Unauthenticated, match="not one this server knows") as unknown:
        policy.authorize("guess", "infer", "fraud-scorer")
    assert refusal_reason(missing.value, None) == "missing"
    assert refusal_reason(unknown.value, "guess") == "unknown"
    assert refusal_reason(PermissionDenied("x"), APP) == "forbidden"


def test_bearer_header_parsing() -> None:
    assert bearer_token(None) is None
    assert bearer_token("  ") is None
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    for bad in ("Basic dXNlcjpwdw==", "Bearer", "abc"):
        with pytest.raises(Unauthenticated, match="Authorization: Bearer"):
            bearer_token(bad)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "a mapping with 'principals'"),
        ({"principals": [], "roles": []}, "optionally 'oidc', 'limits' and 'revoked'"),
        ({"principals": []}, "at least one principal"),
        ({"principals": [{"name": "a", "token_sha256": "0" * 64, "actions": ["infer"], "role": "x"}]}, "role"),
        ({"principals": [{"name": "a", "token_sha256": "0" * 64}]}, "missing field"),
        ({"principals": [{"name": "a", "actions": ["read"]}]}, "no token_sha256 and the policy has no 'oidc'"),
        ({"principals": [{"name": "a", "token_sha256": "abc", "actions": ["read"]}]}, "64 hex digits"),
        ({"principals": [{"name": "a", "token_sha256": "0" * 64, "actions": ["fly"]}]}, "unknown action"),
        ({"principals": [{"name": "a", "token_sha256": "0" * 64, "actions": ["infer"]}]}, "at least one entry"),
        (
            {
                "principals": [
                    {"name": "a", "token_sha256": "0" * 64, "actions": ["read"]},
                    {"name": "b", "token_sha256": "0" * 64, "actions": ["read"]},
                ]
            },
            "share a token",
        ),
    ],
)
def test_bad_policies_are_refused_with_the_reason(doc: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        AccessPolicy.from_dict(doc)


def test_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read"):
        AccessPolicy.from_file(tmp_path / "absent.yaml")
    broken = tmp_path / "policy.yaml"
    broken.write_text("principals: [\n")
    with pytest.raises(InvalidArgument, match="not valid YAML"):
        AccessPolicy.from_file(broken)
    broken.write_text("principals:\n  - name: a\n")
    with pytest.raises(InvalidArgument, match=r"policy.yaml: principal #1: missing field"):
        AccessPolicy.from_file(broken)
