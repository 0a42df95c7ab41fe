"""The model repository: layouts, configs, skipping bad models, hot reload, and the dataplane over it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from honed.errors import DataError, InvalidArgument, ModelNotFound, NotFound, Unavailable
from honed.serve.dataplane import DataPlane, status_for
from honed.serve.instances import ModelExecutor
from honed.serve.metrics import ServeMetrics
from honed.serve.protocol.types import InferRequest, Tensor
from honed.serve.repository import ModelRepository, discover, model_name_for, read_config


def tiny(path: Path, scale: float = 2.0) -> Path:
    w = numpy_helper.from_array(np.array([scale], np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def request(value: float = 1.0) -> InferRequest:
    return InferRequest(inputs=[Tensor("x", "FP32", (1, 3), np.full((1, 3), value, np.float32))], id="r")


def dataplane(path: Path, defaults: dict[str, object] | None = None) -> DataPlane:
    metrics = ServeMetrics()
    return DataPlane(ModelRepository(path, ModelExecutor.start, defaults=defaults, metrics=metrics), metrics)


def test_optimize_output_folder_serves_as_is(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tiny(out / "model.onnx", scale=3.0)
    (out / "recipe.json").write_text(json.dumps({"runtime": {"graph_optimization": "basic"}, "passes": []}))
    (out / "report.json").write_text("{}")

    async def run() -> None:
        dp = dataplane(out)
        await dp.start()
        try:
            assert await dp.ready()
            meta = await dp.model_metadata("out")
            assert meta.versions == ("1",)
            answer = await dp.infer("out", None, request(2.0))
            np.testing.assert_array_equal(answer.outputs[0].data, np.full((1, 3), 6.0, np.float32))
            assert answer.id == "r" and answer.model_version == "1"
            assert dp.repository.config("out").runtime.graph_optimization == "basic"  # type: ignore[union-attr]
        finally:
            await dp.repository.close()

    asyncio.run(run())


def test_a_winner_compiled_for_static_shapes_serves_every_batch(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    out = tmp_path / "out"
    tiny(out / "model.onnx", scale=3.0)
    runtime = {"backend": "openvino", "static_shapes": [{"x": [2, 3]}]}
    (out / "recipe.json").write_text(json.dumps({"runtime": runtime, "passes": []}))

    async def run() -> None:
        dp = dataplane(out)
        await dp.start()
        try:
            assert dp.repository.config("out").runtime.static_shapes == ({"x": (2, 3)},)  # type: ignore[union-attr]
            meta = await dp.model_metadata("out")
            assert meta.inputs[0].shape == (-1, 3)  # the model as it is: any batch
            for rows in (1, 2, 3):
                x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
                answer = await dp.infer("out", None, InferRequest(inputs=[Tensor("x", "FP32", x.shape, x)]))
                np.testing.assert_allclose(answer.outputs[0].data, 3.0 * x)
        finally:
            await dp.repository.close()

    asyncio.run(run())


def test_layouts_and_names(tmp_path: Path) -> None:
    tiny(tmp_path / "repo" / "a" / "1" / "model.onnx")
    tiny(tmp_path / "repo" / "a" / "3" / "model.onnx")
    tiny(tmp_path / "repo" / "b" / "model.onnx")
    (tmp_path / "repo" / "empty").mkdir()
    sources, bad = discover(tmp_path / "repo")
    assert {s.name: sorted(s.versions) for s in sources} == {"a": ["1", "3"], "b": ["1"]}
    assert bad[0][0] == "empty" and "no model.onnx" in bad[0][1]
    single = tiny(tmp_path / "my model.onnx")
    assert model_name_for(single) == "my-model"
    assert [s.name for s in discover(single)[0]] == ["my-model"]
    with pytest.raises(ModelNotFound):
        discover(tmp_path / "missing")
    with pytest.raises(InvalidArgument, match=r"not an \.onnx file"):
        (tmp_path / "notes.txt").write_text("x")
        discover(tmp_path / "notes.txt")


def test_config_file_overrides_defaults(tmp_path: Path) -> None:
    tiny(tmp_path / "m" / "1" / "model.onnx")
    (tmp_path / "m" / "config.yaml").write_text("batching:\n  max_batch_size: 8\ninstances: 2\n")
    source = discover(tmp_path)[0][0]
    config = read_config(source, {"batching": {"max_batch_size": 4, "max_queue_delay_ms": 7}, "instances": 1})
    assert config.batching.max_batch_size == 8 and config.batching.max_queue_delay_ms == 7 and config.instances == 2
    (tmp_path / "m" / "config.yaml").write_text("batching: [oops\n")
    with pytest.raises(InvalidArgument, match="not valid YAML"):
        read_config(source)
    (tmp_path / "m" / "config.yaml").write_text("instancez: 2\n")
    with pytest.raises(InvalidArgument, match="unknown serving config key"):
        read_config(source)


def test_a_models_versions_share_its_instances_run_slots(tmp_path: Path) -> None:
    tiny(tmp_path / "m" / "1" / "model.onnx", scale=2.0)
    tiny(tmp_path / "m" / "2" / "model.onnx", scale=3.0)
    (tmp_path / "m" / "config.yaml").write_text("instances: 2\n")

    async def run() -> None:
        repository = ModelRepository(tmp_path, ModelExecutor.start, defaults={"warmup": False}, metrics=ServeMetrics())
        await repository.start()
        try:
            executors = [repository.get("m", v)[1] for v in ("1", "2")]
            slots = {id(e.batcher.slots) for e in executors}
            assert len(slots) == 1 and executors[0].batcher.slots.capacity == 2
            (tmp_path / "m" / "config.yaml").write_text("instances: 3\n")
            await repository.load("m")
            reloaded = [repository.get("m", v)[1] for v in ("1", "2")]
            shared = reloaded[0].batcher.slots
            assert shared is reloaded[1].batcher.slots and shared.capacity == 3
            x = {"x": np.ones((1, 3), np.float32)}
            answers = await asyncio.gather(*(e.infer(dict(x)) for e in reloaded for _ in range(8)))
            assert [float(a["y"][0, 0]) for a in answers] == [2.0] * 8 + [3.0] * 8
            assert shared.in_use == 0
        finally:
            await repository.close()

    asyncio.run(run())


def test_bad_model_is_skipped_and_reload_keeps_old_version(tmp_path: Path) -> None:
    tiny(tmp_path / "good" / "1" / "model.onnx")
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "model.onnx").write_bytes(b"nope")

    async def run() -> None:
        dp = dataplane(tmp_path, {"warmup": False})
        await dp.start()
        try:
            states = {row["name"]: row for row in await dp.repository_index()}
            assert states["good"]["state"] == "READY" and states["bad"]["state"] == "UNAVAILABLE"
            with pytest.raises(Unavailable):
                await dp.infer("bad", None, request())
            assert not await dp.model_ready("bad")
            with pytest.raises(NotFound):
                await dp.model_ready("nothing")
            tiny(tmp_path / "good" / "2" / "model.onnx", scale=5.0)
            (tmp_path / "good" / "config.yaml").write_text("instances: 0\n")
            with pytest.raises(InvalidArgument, match="keep serving"):
                await dp.load("good")
            assert (await dp.infer("good", None, request())).model_version == "1"
            (tmp_path / "good" / "config.yaml").unlink()
            await dp.load("good")
            answer = await dp.infer("good", None, request())
            assert answer.model_version == "2"
            np.testing.assert_array_equal(answer.outputs[0].data, np.full((1, 3), 5.0, np.float32))
            with pytest.raises(DataError, match="must be FP32"):
                bad = InferRequest(inputs=[Tensor("x", "FP64", (1, 3), np.ones((1, 3)))])
                await dp.infer("good", "1", bad)
        finally:
            await dp.repository.close()

    asyncio.run(run())


def test_one_error_table() -> None:
    from honed.errors import DeadlineExceeded, Overloaded, PayloadTooLarge, PermissionDenied, Unauthenticated

    assert status_for(NotFound("x")) == (404, "NOT_FOUND")
    assert status_for(DataError("x")) == (400, "INVALID_ARGUMENT")
    assert status_for(PayloadTooLarge("x")) == (413, "RESOURCE_EXHAUSTED")
    assert status_for(Overloaded("x")) == (429, "RESOURCE_EXHAUSTED")
    assert status_for(Unavailable("x")) == (503, "UNAVAILABLE")
    assert status_for(DeadlineExceeded("x")) == (504, "DEADLINE_EXCEEDED")
    assert status_for(Unauthenticated("x")) == (401, "UNAUTHENTICATED")
    assert status_for(PermissionDenied("x")) == (403, "PERMISSION_DENIED")
    assert status_for(RuntimeError("x")) == (500, "INTERNAL")


def _instance_threads(model: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"honed-{model}-")]


class _Closing:
    """A real executor whose first ``close`` first runs ``on_close`` (a shutdown arriving right then)."""

    def __init__(self, executor: Any, on_close: Callable[[], None]) -> None:
        self._executor, self._on_close = executor, on_close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)

    async def close(self, drain: bool = True) -> None:
        self._on_close()
        await self._executor.close(drain)


@pytest.mark.parametrize("where", ["starting the new versions", "closing the old versions"])
def test_a_reload_cancelled_midway_leaves_no_instance_running(tmp_path: Path, where: str) -> None:
    """Shutdown cancels the rollout follower wherever it is, a reload included: a version being started ends its
    threads before the cancellation goes on, and the old versions being closed still all close, so no session's
    thread outlives ``close`` (one that does is unwound at interpreter exit and aborts the process)."""
    tiny(tmp_path / "m" / "1" / "model.onnx")
    tiny(tmp_path / "m" / "2" / "model.onnx", scale=3.0)
    reload: asyncio.Task[None] | None = None
    first = True

    def cancel_once() -> None:
        nonlocal first
        if first and reload is not None:
            first = False
            reload.cancel()

    async def factory(*args: Any, **kwargs: Any) -> Any:
        if reload is not None and where == "starting the new versions":
            cancel_once()  # the start below is cancelled at its first wait, its session being built
        executor = await ModelExecutor.start(*args, **kwargs)
        return _Closing(executor, cancel_once) if reload is None and where == "closing the old versions" else executor

    async def run() -> None:
        nonlocal reload
        repository = ModelRepository(tmp_path, factory, defaults={"instances": 2}, metrics=ServeMetrics())
        await repository.start()
        reload = asyncio.create_task(repository.load("m"))
        with pytest.raises(asyncio.CancelledError):
            await reload
        assert not first, "the reload was not cancelled where this test means"
        if where == "starting the new versions":  # nothing of the cancelled start is left, and v1, v2 still serve
            assert sorted(_instance_threads("m")) == [f"honed-m-{v}-{i}" for v in (1, 2) for i in (0, 1)]
        await repository.close()
        assert repository.versions("m") == []
        assert _instance_threads("m") == []

    asyncio.run(run())
