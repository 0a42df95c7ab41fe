"""Identity from an identity provider, live policy and per-identity limits, against a real ``honed serve``.

A test IdP (tests/idp.py) makes RSA, EC and Ed25519 keys and publishes their JWKS as a file; the server's policy
maps JWT subjects to grants. Every credential is tried on REST (httpx) and gRPC (the V2 stubs tritonclient ships),
asserting each allow and deny with its status and reason. The live-policy cases rewrite the policy, send SIGHUP
and wait for the server to report the reload. The JWKS-over-HTTPS cases (unknown kid, rotation, a flood of made-up
kids) drive the verifier against a real local HTTPS key server with an injected clock.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2 as pb

from honed.errors import InvalidArgument
from honed.serve.access import token_hash
from honed.serve.oidc import REFETCH_INTERVAL_S, InvalidToken, JwtVerifier, OidcSettings, load_jwks
from tests.conformance import models
from tests.conformance.server import RunningServer, start_server
from tests.idp import TestIdP, serve_jwks
from tests.serve.test_batching import FakeClock

APP, OPS = "app-secret-token-0001", "ops-secret-token-0002"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
LEEWAY_S = 60


def _policy(jwks: Path, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "principals": [
            {"name": "app", "token_sha256": token_hash(APP), "models": ["fraud*"], "actions": ["infer", "read"]},
            {"name": "ops", "token_sha256": token_hash(OPS), "actions": ["metrics"]},
            {"name": "alice", "models": ["fraud*"], "actions": ["infer", "read"]},
            {"name": "bob", "models": ["credit"], "actions": ["infer"]},
            {"name": "burst", "models": ["*"], "actions": ["infer"]},
            {"name": "carol", "models": ["*"], "actions": ["infer"]},
            {"name": "dave", "models": ["*"], "actions": ["infer"]},
        ],
        "oidc": {"issuer": "https://idp.test", "audience": "honed", "jwks": jwks.name, "leeway_s": LEEWAY_S},
        "limits": {
            "principals": {
                "burst": {"rps": 0.001, "burst": 2},
                "carol": {"models": {"credit": {"rps": 0.001, "burst": 1}}},
                "dave": {"rps": 0.001, "burst": 2},
            }
        },
    }
    doc.update(changes)
    return doc


@pytest.fixture(scope="module")
def idp() -> TestIdP:
    provider = TestIdP()
    for alg in ("RS256", "ES256", "EdDSA"):
        provider.add_key(alg, kid=alg)
    provider.add_key("RS256", kid="never-published", publish=False)
    return provider


@pytest.fixture(scope="module")
def server(idp: TestIdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("identity")
    models.mlp(root / "repo" / "fraud" / "1" / "model.onnx", seed=1)
    models.mlp(root / "repo" / "credit" / "1" / "model.onnx", seed=2)
    jwks = idp.write_jwks(root / "jwks.json")
    policy = root / "access.yaml"
    policy.write_text(yaml.safe_dump(_policy(jwks)))
    args = ["--repository", str(root / "repo"), "--access", str(policy), "--access-poll-s", "0"]
    args += ["--metrics", "127.0.0.1:0"]
    running = start_server(args, root / "server.log")
    yield running
    assert running.stop() == 0, running.output()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url) as ch:
        yield ch


def _infer(http: httpx.Client, token: str, model: str = "fraud") -> httpx.Response:
    return http.post(f"/v2/models/{model}/infer", json=BODY, headers={"Authorization": f"Bearer {token}"})


def _grpc_infer(channel: grpc.Channel, token: str, model: str = "fraud") -> pb.ModelInferResponse:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="x", datatype="FP32", shape=[1, 8])
    message.raw_input_contents.append(np.ones((1, 8), dtype=np.float32).tobytes())
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    return call(message, metadata=[("authorization", f"Bearer {token}")], timeout=30)


def _grpc_refusal(channel: grpc.Channel, token: str, model: str = "fraud") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        _grpc_infer(channel, token, model)
    return refused.value


# -- signatures and claims -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_a_good_token_of_each_algorithm_is_served_on_both_transports(
    idp: TestIdP, http: httpx.Client, channel: grpc.Channel, alg: str
) -> None:
    token = idp.token("alice", kid=alg)
    answer = _infer(http, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["shape"] == [1, 4]
    assert list(_grpc_infer(channel, token).outputs[0].shape) == [1, 4]


def _bad_tokens(idp: TestIdP) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    return {
        "alg none": (idp.forge_none("alice", "RS256"), "alg 'none'"),
        "HS256 with the public key": (idp.forge_hs256("alice", "RS256"), "alg 'HS256'"),
        "wrong issuer": (idp.token("alice", kid="RS256", iss="https://evil.test"), "issuer (iss) is not"),
        "wrong audience": (idp.token("alice", kid="ES256", aud="another-service"), "audience (aud)"),
        "no audience": (idp.token("alice", kid="ES256", aud=None), "no 'aud' claim"),
        "expired": (idp.token("alice", kid="EdDSA", iat=now - 900, exp=now - 600), "expired"),
        "not valid yet": (idp.token("alice", kid="RS256", nbf=now + 600), "not valid yet"),
        "no exp": (idp.token("alice", kid="RS256", exp=None), "no 'exp' claim"),
        "unpublished key": (idp.token("alice", kid="never-published"), "does not hold"),
        "tampered payload": (_tamper(idp.token("alice", kid="ES256")), "signature does not verify"),
        "not a JWT": ("a.b.c", "not a well-formed JWT"),
    }


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def _tamper(token: str) -> str:
    """``token`` with its subject changed and the original signature kept."""
    header, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return f"{header}.{_b64({**claims, 'sub': 'carol'})}.{signature}"


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "HS256 with the public key",
        "wrong issuer",
        "wrong audience",
        "no audience",
        "expired",
        "not valid yet",
        "no exp",
        "unpublished key",
        "tampered payload",
        "not a JWT",
    ],
)
def test_a_bad_token_is_401_and_unauthenticated_with_a_reason(
    idp: TestIdP, http: httpx.Client, channel: grpc.Channel, case: str
) -> None:
    token, reason = _bad_tokens(idp)[case]
    answer = _infer(http, token)
    assert answer.status_code == 401, answer.text
    assert reason in answer.json()["error"]
    assert answer.headers["www-authenticate"].startswith("Bearer")
    refused = _grpc_refusal(channel, token)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason in (refused.details() or "")
    assert "BEGIN PUBLIC KEY" not in answer.text and "BEGIN" not in (refused.details() or "")


def test_clock_skew_within_the_leeway_is_accepted_beyond_it_refused(idp: TestIdP, http: httpx.Client) -> None:
    now = int(time.time())
    skewed = idp.token("alice", kid="RS256", iat=now - 600, exp=now - LEEWAY_S // 3)
    assert _infer(http, skewed).status_code == 200
    early = idp.token("alice", kid="RS256", nbf=now + LEEWAY_S // 3)
    assert _infer(http, early).status_code == 200
    beyond = idp.token("alice", kid="RS256", iat=now - 600, exp=now - 5 * LEEWAY_S)
    assert _infer(http, beyond).status_code == 401


def test_a_valid_token_without_a_grant_is_403_and_permission_denied(
    idp: TestIdP, http: httpx.Client, channel: grpc.Channel
) -> None:
    outside = idp.token("bob", kid="ES256")  # bob may infer on credit only
    answer = _infer(http, outside)
    assert answer.status_code == 403 and "'bob' is not allowed to infer on model 'fraud'" in answer.json()["error"]
    assert _grpc_refusal(channel, outside).code() == grpc.StatusCode.PERMISSION_DENIED
    assert _infer(http, outside, "credit").status_code == 200
    stranger = idp.token("mallory", kid="ES256")  # verifies, but the policy names no such principal
    answer = _infer(http, stranger)
    assert answer.status_code == 403 and "'mallory' holds no grant" in answer.json()["error"]
    assert _grpc_refusal(channel, stranger).code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_jwt_cannot_sign_in_as_a_token_principal(idp: TestIdP, http: httpx.Client) -> None:
    answer = _infer(http, idp.token("app", kid="RS256"))  # "app" holds a bearer token: the IdP cannot mint it
    assert answer.status_code == 403, answer.text
    assert _infer(http, APP).status_code == 200  # the static token still works beside the IdP


# -- rate limits -----------------------------------------------------------------------------------------------


def _scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = http.get("/metrics", headers={"Authorization": f"Bearer {OPS}"})
    assert answer.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_over_its_limit_a_principal_gets_429_with_retry_after_and_resource_exhausted(
    idp: TestIdP, http: httpx.Client, channel: grpc.Channel
) -> None:
    token = idp.token("burst", kid="EdDSA")  # burst 2, then one request per 1000 s
    assert _infer(http, token).status_code == 200
    assert _infer(http, token, "credit").status_code == 200
    limited = _infer(http, token)
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert "'burst' is over its rate limit" in limited.json()["error"]
    refused = _grpc_refusal(channel, token)  # the bucket is the principal's, whatever the transport
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(refused.trailing_metadata() or ())
    assert int(trailers["retry-after"]) >= 1
    assert _infer(http, idp.token("alice", kid="EdDSA")).status_code == 200  # a quiet principal is untouched
    counted = _scrape(http)[("honed_rate_limited_total", (("model", ""), ("principal", "burst")))]
    assert counted == 2


def test_a_per_model_limit_leaves_the_principals_other_models_alone(
    idp: TestIdP, http: httpx.Client, channel: grpc.Channel
) -> None:
    token = idp.token("carol", kid="RS256")
    assert _infer(http, token, "credit").status_code == 200
    limited = _infer(http, token, "credit")
    assert limited.status_code == 429 and "limit on models 'credit'" in limited.json()["error"]
    assert _grpc_refusal(channel, token, "credit").code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _infer(http, token, "fraud").status_code == 200
    assert _scrape(http)[("honed_rate_limited_total", (("model", "credit"), ("principal", "carol")))] == 2


def test_grpc_takes_a_principal_s_limit_once_and_before_it_parses_the_message(
    idp: TestIdP, channel: grpc.Channel
) -> None:
    token = idp.token("dave", kid="ES256")  # burst 2, then one request per 1000 s
    garbage = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # raw bytes, no serializer
    metadata = [("authorization", f"Bearer {token}")]
    with pytest.raises(grpc.RpcError) as malformed:
        garbage(b"\xff\xff\xff", metadata=metadata, timeout=30)
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # admitted (one token), then not parseable
    _grpc_infer(channel, token)  # the second token: one call takes one, the guard's and the method's together
    with pytest.raises(grpc.RpcError) as limited:
        garbage(b"\xff\xff\xff", metadata=metadata, timeout=30)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # refused before the message was parsed


# -- the metrics listener ----------------------------------------------------------------------------------------


def _metrics_base(server: RunningServer) -> str:
    found = re.search(r"metrics on 127\.0\.0\.1:(\d+)", server.output())
    assert found, server.output()
    return f"http://127.0.0.1:{found.group(1)}"


def test_the_metrics_listener_answers_metrics_alone_with_the_same_access_check(server: RunningServer) -> None:
    with httpx.Client(base_url=_metrics_base(server), timeout=30) as scrape:
        assert scrape.get("/metrics").status_code == 401
        assert scrape.get("/metrics", headers={"Authorization": f"Bearer {APP}"}).status_code == 403  # no 'metrics'
        answer = scrape.get("/metrics", headers={"Authorization": f"Bearer {OPS}"})
        assert answer.status_code == 200
        assert "honed_requests_total" in {f.name + "_total" for f in text_string_to_metric_families(answer.text)}
        for method, path in [
            ("POST", "/v2/models/fraud/infer"),
            ("GET", "/v2/models/fraud"),
            ("GET", "/v2"),
            ("GET", "/v2/health/ready"),
            ("POST", "/v2/repository/models/fraud/unload"),
        ]:
            refused = scrape.request(method, path, json=BODY, headers={"Authorization": f"Bearer {APP}"})
            assert refused.status_code == 404, (path, refused.text)
            assert "serves /metrics alone" in refused.json()["error"]


# -- live policy -----------------------------------------------------------------------------------------------


def _reloads(server: RunningServer) -> int:
    out = server.output()
    return out.count("access policy reloaded") + out.count("access policy not reloaded")


def _sighup(server: RunningServer) -> str:
    """Send SIGHUP and wait for the server to report the reload; the log line it wrote."""
    before = _reloads(server)
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while _reloads(server) == before:
        assert time.monotonic() < deadline, server.output()
        assert server.proc.poll() is None, server.output()
        time.sleep(0.05)
    return [line for line in server.output().splitlines() if "access policy" in line][-1]


def _policy_file(server: RunningServer) -> Path:
    args = [str(a) for a in server.proc.args]  # type: ignore[union-attr]
    return Path(args[args.index("--access") + 1])


def _write_policy(server: RunningServer, text: str) -> Path:
    policy = _policy_file(server)
    policy.write_text(text)
    return policy


@contextmanager
def _reloaded_with(server: RunningServer) -> Iterator[Path]:
    """The JWKS file beside the policy; on exit the original policy is written back and reloaded."""
    jwks = _policy_file(server).parent / "jwks.json"
    try:
        yield jwks
    finally:
        _write_policy(server, yaml.safe_dump(_policy(jwks)))
        assert "reloaded" in _sighup(server)


def test_revoking_a_principal_or_a_key_applies_on_the_next_request_after_sighup(
    idp: TestIdP, server: RunningServer, http: httpx.Client, channel: grpc.Channel
) -> None:
    alice_es, alice_rs = idp.token("alice", kid="ES256"), idp.token("alice", kid="RS256")
    assert _infer(http, alice_es).status_code == 200
    with _reloaded_with(server) as jwks:
        _write_policy(server, yaml.safe_dump(_policy(jwks, revoked={"principals": ["alice", "app"]})))
        assert "reloaded" in _sighup(server)
        for token in (alice_es, APP):
            answer = _infer(http, token)
            assert answer.status_code == 401 and "revoked" in answer.json()["error"], answer.text
            assert _grpc_refusal(channel, token).code() == grpc.StatusCode.UNAUTHENTICATED
        _write_policy(server, yaml.safe_dump(_policy(jwks, revoked={"kids": ["ES256"]})))
        assert "reloaded" in _sighup(server)
        answer = _infer(http, alice_es)
        assert answer.status_code == 401 and "key 'ES256', which this server has revoked" in answer.json()["error"]
        assert _infer(http, alice_rs).status_code == 200  # alice herself is back, through another key
        assert _infer(http, APP).status_code == 200


def test_a_broken_policy_is_reported_and_the_old_one_stays_in_force(
    idp: TestIdP, server: RunningServer, http: httpx.Client
) -> None:
    token = idp.token("alice", kid="EdDSA")
    failures = _scrape(http).get(("honed_access_policy_reloads_total", (("result", "failure"),)), 0.0)
    with _reloaded_with(server) as jwks:
        for broken in (
            "principals: [unclosed\n",  # not YAML
            yaml.safe_dump(_policy(jwks, oidc={"issuer": "https://idp.test", "audience": "honed"})),  # no jwks
            yaml.safe_dump(_policy(jwks, limits={"default": {"rps": -1}})),
        ):
            _write_policy(server, broken)
            line = _sighup(server)
            assert "not reloaded" in line and "previous policy stays in force" in line, line
            assert _infer(http, token).status_code == 200
            assert _infer(http, APP).status_code == 200
        after = _scrape(http)[("honed_access_policy_reloads_total", (("result", "failure"),))]
        assert after == failures + 3


def test_a_new_key_in_the_jwks_file_applies_after_reload_and_a_removed_one_stops(
    idp: TestIdP, server: RunningServer, http: httpx.Client
) -> None:
    jwks = _policy_file(server).parent / "jwks.json"
    rotated = idp.add_key("ES256", kid="rotated-es256", publish=False)
    old = idp.token("alice", kid="RS256")
    try:
        idp.published = [rotated.kid, "ES256", "EdDSA"]  # RS256 retired, a new EC key published
        idp.write_jwks(jwks)
        assert "reloaded" in _sighup(server)
        assert _infer(http, idp.token("alice", kid=rotated.kid)).status_code == 200
        retired = _infer(http, old)
        assert retired.status_code == 401 and "does not hold" in retired.json()["error"]
    finally:
        idp.published = ["RS256", "ES256", "EdDSA"]
        idp.write_jwks(jwks)
        assert "reloaded" in _sighup(server)


# -- JWKS over HTTPS: unknown kid, rotation, a flood of made-up kids (injected clock) --------------------------


def test_an_unknown_kid_refetches_the_https_jwks_at_most_once_per_interval(tmp_path: Path) -> None:
    idp = TestIdP()
    idp.add_key("RS256", kid="k1")
    clock = FakeClock()
    with serve_jwks(idp, tmp_path) as jwks:
        settings = OidcSettings(issuer=idp.issuer, audience=(idp.audience,), jwks=jwks.url, jwks_ca=str(jwks.ca_file))
        verifier = JwtVerifier(settings, load_jwks(settings), clock=clock)
        assert len(jwks.fetches) == 1

        async def verify(token: str) -> str:
            return await verifier.verify(token)

        assert asyncio.run(verify(idp.token("alice", kid="k1"))) == "alice"
        assert len(jwks.fetches) == 1  # a known kid needs no fetch

        idp.add_key("EdDSA", kid="k2", publish=False)
        with pytest.raises(InvalidToken, match="does not hold"):
            asyncio.run(verify(idp.token("alice", kid="k2")))  # unknown: one refetch, still unknown
        assert len(jwks.fetches) == 2

        idp.published.append("k2")  # the IdP rotates
        clock.now += REFETCH_INTERVAL_S / 2
        with pytest.raises(InvalidToken, match="does not hold"):
            asyncio.run(verify(idp.token("alice", kid="k2")))  # within the interval: no new fetch
        assert len(jwks.fetches) == 2

        clock.now += REFETCH_INTERVAL_S / 2
        assert asyncio.run(verify(idp.token("alice", kid="k2"))) == "alice"  # the rotated key is fetched
        assert len(jwks.fetches) == 3

        async def flood() -> list[BaseException | str]:
            tokens = [idp.token(f"s{i}", kid="k1") for i in range(50)]
            forged = [t.replace(t.split(".")[0], _header_with_kid(f"made-up-{i}")) for i, t in enumerate(tokens)]
            return await asyncio.gather(*(verifier.verify(t) for t in forged), return_exceptions=True)

        clock.now += REFETCH_INTERVAL_S
        results = asyncio.run(flood())
        assert all(isinstance(r, InvalidToken) for r in results)
        assert len(jwks.fetches) == 4  # fifty made-up kids cost the IdP one fetch


def _header_with_kid(kid: str) -> str:
    return _b64({"alg": "RS256", "typ": "JWT", "kid": kid})


def test_a_jwks_url_over_plain_http_or_with_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="never plain http"):
        OidcSettings(issuer="https://idp.test", audience=("honed",), jwks="http://idp.test/jwks.json")
    idp = TestIdP()
    idp.add_key("ES256")
    with serve_jwks(idp, tmp_path) as jwks:
        settings = OidcSettings(issuer=idp.issuer, audience=(idp.audience,), jwks=jwks.url)  # system CAs only
        with pytest.raises(InvalidArgument, match="cannot fetch the key set"):
            load_jwks(settings)


def test_a_changed_policy_file_is_picked_up_by_the_poll(tmp_path: Path) -> None:
    models.mlp(tmp_path / "repo" / "fraud" / "1" / "model.onnx", seed=1)
    policy = tmp_path / "access.yaml"
    entry = {"name": "app", "token_sha256": token_hash(APP), "models": ["fraud"], "actions": ["infer"]}
    policy.write_text(yaml.safe_dump({"principals": [entry]}))
    args = ["--repository", str(tmp_path / "repo"), "--access", str(policy), "--access-poll-s", "0.1"]
    running = start_server(args, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=running.base, timeout=30) as http:
            assert _infer(http, APP).status_code == 200
            moved = {**entry, "token_sha256": token_hash(OPS)}  # the app's token rotated: the old one stops
            policy.write_text(yaml.safe_dump({"principals": [moved]}))
            deadline = time.monotonic() + 30
            while "reloaded from" not in running.output():
                assert time.monotonic() < deadline, running.output()
                time.sleep(0.05)
            assert "(file changed)" in running.output()
            assert _infer(http, APP).status_code == 401
            assert _infer(http, OPS).status_code == 200
    finally:
        assert running.stop() == 0, running.output()
