"""The live access policy: a reload applies a whole valid policy, keeps the old one when the new is broken, is
counted, and the poll notices a changed policy file or JWKS file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from honed.errors import PermissionDenied, Unauthenticated
from honed.serve.access import AccessPolicy, token_hash
from honed.serve.metrics import ServeMetrics
from honed.serve.policy_reload import PolicyReloader
from tests.idp import TestIdP

A, B = "token-a-0123456789", "token-b-0123456789"


def _write(path: Path, *principals: tuple[str, str], **sections: object) -> None:
    doc: dict[str, object] = {
        "principals": [{"name": n, "token_sha256": token_hash(t), "actions": ["metrics"]} for n, t in principals]
    }
    doc.update(sections)
    path.write_text(yaml.safe_dump(doc))


def _reloads(metrics: ServeMetrics, result: str) -> float:
    return metrics.registry.get_sample_value("honed_access_policy_reloads_total", {"result": result}) or 0.0


def test_a_reload_applies_a_valid_policy_and_keeps_the_old_one_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    _write(path, ("a", A))
    applied: list[AccessPolicy] = []
    metrics = ServeMetrics()
    reloader = PolicyReloader(AccessPolicy.from_file(path), applied.append, metrics=metrics, poll_s=0)

    async def scenario() -> None:
        assert not await reloader.changed()
        _write(path, ("b", B))
        assert await reloader.changed()
        assert await reloader.reload("test")
        assert not await reloader.changed()
        path.write_text("principals: [{name: c, actions: [fly]}]\n")
        assert await reloader.changed()
        assert not await reloader.reload("test")
        assert not await reloader.changed()  # a broken file is tried once, not on every poll

    asyncio.run(scenario())
    assert len(applied) == 1
    assert reloader.current is applied[0]
    assert reloader.current.authorize(B, "metrics").name == "b"
    with pytest.raises(Unauthenticated):
        reloader.current.authorize(A, "metrics")  # removing a principal revokes its token
    assert (_reloads(metrics, "success"), _reloads(metrics, "failure")) == (1.0, 1.0)


def test_the_poll_reloads_when_the_jwks_file_changes(tmp_path: Path) -> None:
    idp = TestIdP()
    idp.add_key("EdDSA", kid="k1")
    idp.add_key("ES256", kid="k2", publish=False)
    jwks = idp.write_jwks(tmp_path / "jwks.json")
    path = tmp_path / "access.yaml"
    oidc = {"issuer": idp.issuer, "audience": idp.audience, "jwks": "jwks.json"}
    path.write_text(yaml.safe_dump({"principals": [{"name": "alice", "actions": ["metrics"]}], "oidc": oidc}))
    policy = AccessPolicy.from_file(path)
    assert policy.watched_files == (path, jwks)

    async def scenario() -> AccessPolicy:
        applied: asyncio.Queue[AccessPolicy] = asyncio.Queue()
        reloader = PolicyReloader(policy, applied.put_nowait, poll_s=0.02)
        assert (await policy.authenticate(idp.token("alice", kid="k1"))).name == "alice"
        watcher = asyncio.create_task(reloader.watch())
        try:
            idp.published = ["k2"]
            idp.write_jwks(jwks)
            new = await asyncio.wait_for(applied.get(), timeout=30)
        finally:
            watcher.cancel()
        assert (await new.authenticate(idp.token("alice", kid="k2"))).name == "alice"
        return new

    new = asyncio.run(scenario())
    assert new.oidc is not None and new.oidc.kids == frozenset({"k2"})


def test_a_jwt_principal_needs_an_oidc_section_and_cannot_shadow_a_token_principal(tmp_path: Path) -> None:
    idp = TestIdP()
    idp.add_key("RS256", kid="k1")
    idp.write_jwks(tmp_path / "jwks.json")
    doc = {
        "principals": [
            {"name": "svc", "token_sha256": token_hash(A), "actions": ["metrics"]},
            {"name": "alice", "actions": ["metrics"]},
        ],
        "oidc": {"issuer": idp.issuer, "audience": [idp.audience, "other"], "jwks": "jwks.json"},
    }
    policy = AccessPolicy.from_dict(doc, base=tmp_path)

    async def who(token: str) -> str:
        return (await policy.authenticate(token)).name

    assert asyncio.run(who(idp.token("alice", kid="k1", aud="other"))) == "alice"
    assert asyncio.run(who(A)) == "svc"
    with pytest.raises(PermissionDenied, match="'svc' holds no grant"):
        asyncio.run(who(idp.token("svc", kid="k1")))
