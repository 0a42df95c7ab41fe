"""``honed access check`` reads a policy as the server will; ``access token --policy`` keeps the other sections."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from honed.cli.main import run
from honed.serve.access import AccessPolicy
from tests.idp import TestIdP


def _policy(tmp_path: Path) -> Path:
    idp = TestIdP()
    idp.add_key("ES256", kid="k1")
    idp.add_key("EdDSA", kid="k2")
    idp.write_jwks(tmp_path / "jwks.json")
    path = tmp_path / "access.yaml"
    doc = {
        "principals": [{"name": "alice", "models": ["*"], "actions": ["infer"]}],
        "oidc": {"issuer": idp.issuer, "audience": idp.audience, "jwks": "jwks.json", "leeway_s": 30},
        "limits": {"default": {"rps": 5, "burst": 10}},
        "revoked": {"principals": ["old-app"], "kids": ["k0"]},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_check_summarizes_a_good_policy_and_refuses_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _policy(tmp_path)
    assert run(["access", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 principal(s), 1 signing in with a JWT" in out
    assert "2 key(s)" in out and "leeway 30 s" in out
    assert "default 5 rps, burst 10" in out
    assert "revoked: old-app, k0" in out
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}')
    assert run(["access", "check", str(path)]) == 2
    assert "symmetric (oct) key" in capsys.readouterr().err


def test_token_added_to_a_policy_keeps_its_oidc_limits_and_revocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _policy(tmp_path)
    before = yaml.safe_load(path.read_text())
    assert run(["access", "token", "svc", "-a", "metrics", "--policy", str(path)]) == 0
    token = capsys.readouterr().out.strip()
    after = yaml.safe_load(path.read_text())
    assert {k: v for k, v in after.items() if k != "principals"} == {
        k: v for k, v in before.items() if k != "principals"
    }
    assert AccessPolicy.from_file(path).authorize(token, "metrics").name == "svc"


def test_jwt_adds_a_principal_without_a_token_and_needs_an_oidc_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _policy(tmp_path)
    assert run(["access", "jwt", "batch-job", "-m", "*", "-a", "infer", "--policy", str(path)]) == 0
    entry = yaml.safe_load(path.read_text())["principals"][-1]
    assert entry == {"name": "batch-job", "models": ["*"], "actions": ["infer"]}
    assert [p.name for p in AccessPolicy.from_file(path).principals] == ["alice", "batch-job"]
    assert not list(tmp_path.glob(".*.new"))  # the file was replaced in one step, nothing left beside it
    bare = tmp_path / "bare.yaml"
    assert run(["access", "jwt", "batch-job", "-m", "*", "--policy", str(bare)]) == 2
    assert "no 'oidc' section" in capsys.readouterr().err
    assert not bare.exists()
