"""The rollout follower inside one real dataplane (real registry, real models, no network): explicit versions go
where they say, a full mirror queue drops mirrored work without holding any answer back, and what the mirror
worker compares reaches the registry as observations; a mirrored copy is admitted by the caller's rate limits."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from honed.registry import Registry, open_registry
from honed.registry import rollout_policy as rp
from honed.registry.rollouts import Rollout, Rollouts
from honed.serve.access import AccessPolicy
from honed.serve.limits import RateLimited
from honed.serve.protocol.types import InferRequest, Tensor
from honed.serve.registry_source import RegistryCatalog
from honed.serve.rollout import MAX_RUN_LENGTH, RolloutFollower, run_length
from honed.serve.server import build


def _model(path: Path, offset: float) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    c = helper.make_tensor("c", TensorProto.FLOAT, [1], [offset])
    graph = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "add", [x], [y], [c])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _request(seed: int) -> InferRequest:
    x = np.random.default_rng(seed).normal(size=(1, 4)).astype(np.float32)
    return InferRequest([Tensor("x", "FP32", (1, 4), x)])


def _mirrored_rollout(tmp_path: Path) -> tuple[Registry, Rollouts, Rollout, RegistryCatalog]:
    """scorer v1 (production) rolling out v2 at 50%, every answered request mirrored; a catalog serving it."""
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}", artifacts=tmp_path / "artifacts")
    for v in (1, 2):
        reg.register(_model(tmp_path / f"v{v}.onnx", float(v)), "scorer", actor="alice")
    reg.set_alias("scorer", "production", 1, actor="alice")
    ro = Rollouts(reg)
    settings = rp.RolloutSettings(steps=(50, 100), interval_s=3600, mirror=1.0, min_requests=1, deadline_s=7200)
    rollout = ro.start("scorer", 2, settings, actor="alice", reason="test")
    return reg, ro, rollout, RegistryCatalog(reg, ["scorer@production"], actor="srv")


def test_routing_mirror_queue_and_observations(tmp_path: Path) -> None:
    reg, ro, rollout, catalog = _mirrored_rollout(tmp_path)

    async def scenario() -> None:
        dp = build(None, catalog=catalog)
        await dp.start()
        assert dp.repository.versions("scorer") == ["1"]
        follower = RolloutFollower(
            ro, catalog, dp.repository, dp.metrics, holder="srv", queue_size=2, rng=random.Random(7)
        )
        dp.rollouts = follower
        await follower.refresh()  # the rollout is seen: the candidate loads beside production
        assert dp.repository.versions("scorer") == ["1", "2"]
        for explicit in ("1", "2"):
            assert (await dp.infer("scorer", explicit, _request(0))).model_version == explicit
        answers = [await dp.infer("scorer", None, _request(i)) for i in range(10)]
        assert {a.model_version for a in answers} == {"1", "2"}  # split by the 50% weight
        # the worker is not running yet: two mirrored requests wait, the other ten were dropped, no answer waited
        dropped = dp.metrics.registry.get_sample_value("honed_rollout_mirror_dropped_total", {"model": "scorer"})
        assert dropped == 10
        worker = asyncio.create_task(follower.run())
        try:
            for _ in range(200):
                await asyncio.sleep(0.05)
                if ro.observation(ro.get("scorer")).pairs == 2:
                    break
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        seen = ro.observation(ro.get("scorer"))
        assert seen.pairs == 2 and seen.agreement == 1.0  # x+1 and x+2 have the same argmax
        assert seen.production.requests + seen.candidate.requests == 12 + 2  # served + mirrored runs
        weight = dp.metrics.registry.get_sample_value("honed_rollout_weight", {"model": "scorer", "version": "2"})
        assert weight == 50
        await dp.repository.close()

    try:
        asyncio.run(scenario())
    finally:
        reg.close()
    assert rollout.status == "running"


def test_unversioned_requests_go_in_runs_as_long_as_productions_mean_batch(tmp_path: Path) -> None:
    reg, ro, _, catalog = _mirrored_rollout(tmp_path)

    async def scenario() -> None:
        dp = build(None, catalog=catalog)
        await dp.start()
        follower = RolloutFollower(ro, catalog, dp.repository, dp.metrics, holder="srv", rng=random.Random(3))
        dp.rollouts = follower
        await follower.refresh()
        # Eight requests at once to production: the first runs alone, the rest wait for the one run slot together.
        await asyncio.gather(*(dp.infer("scorer", "1", _request(i)) for i in range(8)))
        runs, requests = dp.repository.get("scorer", "1")[1].run_counts()
        length = run_length(runs, requests, 1)
        assert requests == 8 and length >= 2
        await follower.refresh()  # the poll reads production's runs since the last one
        versions = [(await dp.infer("scorer", None, _request(i))).model_version for i in range(40 * length)]
        chunks = [versions[i : i + length] for i in range(0, len(versions), length)]
        assert all(len(set(chunk)) == 1 for chunk in chunks), versions  # one draw per run
        assert {chunk[0] for chunk in chunks} == {"1", "2"}  # still split by the 50% weight
        # Those requests each ran alone: the next poll routes them one by one again.
        await follower.refresh()
        versions = [(await dp.infer("scorer", None, _request(i))).model_version for i in range(40)]
        assert any(a != b for a, b in zip(versions[::2], versions[1::2], strict=True))
        await dp.repository.close()

    try:
        asyncio.run(scenario())
    finally:
        reg.close()


def test_the_run_length_is_the_mean_batch_within_bounds() -> None:
    assert run_length(2, 8, 1) == 4
    assert run_length(3, 4, 5) == 1
    assert run_length(0, 0, 5) == 5  # nothing ran since the last poll: keep the last figure
    assert run_length(1, 10_000, 1) == MAX_RUN_LENGTH


def test_an_unreachable_registry_keeps_the_last_weights_and_decides_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db" / "registry.db"
    reg = open_registry(f"sqlite:///{path}", artifacts=tmp_path / "artifacts")
    for v in (1, 2):
        reg.register(_model(tmp_path / f"v{v}.onnx", float(v)), "scorer", actor="alice")
    reg.set_alias("scorer", "production", 1, actor="alice")
    ro = Rollouts(reg)
    settings = rp.RolloutSettings(
        steps=(50, 100), interval_s=3600, deadline_s=7200, mirror=0.0, min_agreement=None, min_requests=1
    )
    ro.start("scorer", 2, settings, actor="alice", reason="test")
    catalog = RegistryCatalog(reg, ["scorer@production"], actor="srv")
    hidden = tmp_path / "hidden"

    def gauge(dp: object, name: str, labels: dict[str, str]) -> float | None:
        return dp.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]

    async def scenario() -> None:
        dp = build(None, catalog=catalog)
        await dp.start()
        follower = RolloutFollower(ro, catalog, dp.repository, dp.metrics, holder="srv", rng=random.Random(3))
        dp.rollouts = follower
        await follower.refresh()
        assert gauge(dp, "honed_rollout_registry_reachable", {}) == 1
        path.parent.rename(hidden)  # the database goes away; new connections cannot open it
        path.parent.mkdir()
        path.mkdir()
        reg.engine.dispose()
        answers = [await dp.infer("scorer", None, _request(i)) for i in range(20)]
        await follower.refresh()
        assert gauge(dp, "honed_rollout_registry_reachable", {}) == 0
        assert {a.model_version for a in answers} == {"1", "2"}  # still split by the last weights
        assert gauge(dp, "honed_rollout_weight", {"model": "scorer", "version": "2"}) == 50
        more = [await dp.infer("scorer", None, _request(i)) for i in range(20)]
        assert {a.model_version for a in more} == {"1", "2"}
        path.rmdir()
        path.parent.rmdir()
        hidden.rename(path.parent)
        reg.engine.dispose()
        await follower.refresh()
        assert gauge(dp, "honed_rollout_registry_reachable", {}) == 1
        seen = ro.observation(ro.get("scorer"))
        assert seen.production.requests + seen.candidate.requests == 40  # what it saw while away is not lost
        await dp.repository.close()

    try:
        asyncio.run(scenario())
        current = ro.get("scorer")
        assert current.status == "running" and current.step == 0  # nothing was decided while it was away
    finally:
        reg.close()


def test_a_server_that_does_not_serve_the_replaced_version_does_not_follow(tmp_path: Path) -> None:
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}", artifacts=tmp_path / "artifacts")
    for v in (1, 2, 3):
        reg.register(_model(tmp_path / f"v{v}.onnx", float(v)), "scorer", actor="alice")
    reg.set_alias("scorer", "production", 1, actor="alice")
    ro = Rollouts(reg)
    ro.start("scorer", 2, rp.RolloutSettings(), actor="alice", reason="test")
    catalog = RegistryCatalog(reg, ["scorer:3"], actor="srv")

    async def scenario() -> None:
        dp = build(None, catalog=catalog)
        await dp.start()
        dp.rollouts = RolloutFollower(ro, catalog, dp.repository, dp.metrics, holder="srv")
        await dp.rollouts.refresh()
        assert dp.repository.versions("scorer") == ["3"]
        assert (await dp.infer("scorer", None, _request(0))).model_version == "3"
        assert dp.metrics.registry.get_sample_value("honed_rollout_step", {"model": "scorer"}) is None
        await dp.repository.close()

    try:
        asyncio.run(scenario())
    finally:
        reg.close()


def test_a_mirrored_copy_takes_its_share_of_the_callers_rate_limit(tmp_path: Path) -> None:
    reg, ro, _, catalog = _mirrored_rollout(tmp_path)
    token = "app-token-0123456789"
    policy = AccessPolicy.from_dict(
        {
            "principals": [
                {
                    "name": "app",
                    "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                    "actions": ["infer"],
                    "models": ["scorer"],
                }
            ],
            # three requests in all; a refill of one takes 1000 s, far longer than the test
            "limits": {"principals": {"app": {"rps": 0.001, "burst": 3}}},
        }
    )

    def sample(dp: object, name: str, labels: dict[str, str]) -> float | None:
        return dp.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]

    async def scenario() -> None:
        dp = build(None, catalog=catalog, access=policy)
        await dp.start()
        # the worker never runs: a queue of one holds the first copy, and a second admitted copy would be dropped
        follower = RolloutFollower(ro, catalog, dp.repository, dp.metrics, holder="srv", queue_size=1)
        dp.rollouts = follower
        await follower.refresh()
        caller = await dp.authorize([f"Bearer {token}"], "infer", "scorer")  # 1st of 3
        await dp.infer("scorer", None, _request(0), caller=caller)  # its copy is queued: 2nd of 3
        caller = await dp.authorize([f"Bearer {token}"], "infer", "scorer")  # 3rd of 3
        await dp.infer("scorer", None, _request(1), caller=caller)  # no share left: no copy
        limited = {"principal": "app", "model": ""}
        assert sample(dp, "honed_rate_limited_total", limited) == 1
        assert not sample(dp, "honed_rollout_mirror_dropped_total", {"model": "scorer"})  # never offered
        with pytest.raises(RateLimited):  # the copy spent a share the caller's next request would have had
            await dp.authorize([f"Bearer {token}"], "infer", "scorer")
        await dp.infer("scorer", None, _request(2))  # in-process, no caller: answered, never copied
        assert not sample(dp, "honed_rollout_mirror_dropped_total", {"model": "scorer"})
        await dp.repository.close()

    try:
        asyncio.run(scenario())
    finally:
        reg.close()
