"""ModelExecutor on real (tiny) ONNX models: results, validation, queue-full, timeout, cancel, drain, metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from honed.errors import DataError, DeadlineExceeded, InvalidModel, Overloaded, Unavailable
from honed.serve.config import BatchingConfig, ModelServingConfig
from honed.serve.instances import ModelExecutor, instance_cores
from honed.serve.metrics import ServeMetrics


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def double_model(tmp_path: Path) -> Path:
    """y = 2 * x + z, x and z float32 [N, 4]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    nodes = [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "z"], ["y"])]
    return _save(helper.make_graph(nodes, "double", [x, z], [y], [two]), tmp_path / "double.onnx")


@pytest.fixture
def fixed_model(tmp_path: Path) -> Path:
    """y = -x with a fixed shape [1, 3]: no batch dimension to batch on."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    return _save(helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg", [x], [y]), tmp_path / "neg.onnx")


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(fn())


def _feeds(rows: int, seed: int) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((rows, 4), dtype=np.float32), "z": rng.random((rows, 4), dtype=np.float32)}


def test_concurrent_requests_each_get_their_own_result(double_model: Path) -> None:
    async def main() -> None:
        config = ModelServingConfig(instances=2, batching=BatchingConfig(max_batch_size=8))
        ex = await ModelExecutor.start(double_model, config, name="double", version="1")
        assert [s.name for s in ex.inputs] == ["x", "z"] and [s.name for s in ex.outputs] == ["y"]
        assert ex.max_batch_size == 8
        feeds = [_feeds(1 + i % 3, i) for i in range(40)]
        outs = await asyncio.gather(*(ex.infer(f) for f in feeds))
        for f, out in zip(feeds, outs, strict=True):
            np.testing.assert_allclose(out["y"], 2 * f["x"] + f["z"], rtol=1e-6)
        assert ex.batcher.runs < 40  # some requests shared a run
        await ex.close()

    run(main)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"x": np.zeros((1, 4), np.float32)}, "missing input"),
        ({"x": np.zeros((1, 4), np.float32), "z": np.zeros((1, 4), np.float32), "w": np.zeros(1)}, "unknown input"),
        ({"x": np.zeros((1, 4), np.float64), "z": np.zeros((1, 4), np.float32)}, "element type float64"),
        ({"x": np.zeros((1, 5), np.float32), "z": np.zeros((1, 5), np.float32)}, "dimension 1 at 4"),
        ({"x": np.zeros((4,), np.float32), "z": np.zeros((4,), np.float32)}, "2 dimensions"),
        ({"x": np.zeros((2, 4), np.float32), "z": np.zeros((3, 4), np.float32)}, "disagree on the batch size"),
        ({"x": np.zeros((0, 4), np.float32), "z": np.zeros((0, 4), np.float32)}, "empty batch"),
        ({"x": np.zeros((9, 4), np.float32), "z": np.zeros((9, 4), np.float32)}, "max batch size 8"),
        ({"x": [[0.0] * 4], "z": np.zeros((1, 4), np.float32)}, "numpy array"),
    ],
)
def test_inputs_that_do_not_fit_are_refused(double_model: Path, feeds: Any, message: str) -> None:
    async def main() -> None:
        config = ModelServingConfig(batching=BatchingConfig(max_batch_size=8), warmup=False)
        ex = await ModelExecutor.start(double_model, config, name="double", version="1")
        with pytest.raises(DataError, match=message):
            await ex.infer(feeds)
        out = await ex.infer(_feeds(1, 0))  # still serving
        assert out["y"].shape == (1, 4)
        await ex.close()

    run(main)


def test_model_without_batch_dim(fixed_model: Path) -> None:
    async def main() -> None:
        ex = await ModelExecutor.start(fixed_model, ModelServingConfig(), name="neg", version="1")
        assert ex.max_batch_size == 0
        x = np.arange(3, dtype=np.float32).reshape(1, 3)
        outs = await asyncio.gather(*(ex.infer({"x": x + i}) for i in range(5)))
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], -(x + i))
        with pytest.raises(DataError, match="fixes dimension 0 at 1"):
            await ex.infer({"x": np.zeros((2, 3), np.float32)})
        await ex.close()

    run(main)


class _Blocked:
    """Holds an instance's thread busy until released, so requests pile up in the queue."""

    def __init__(self, ex: ModelExecutor) -> None:
        self.event = threading.Event()
        self.task = asyncio.ensure_future(ex.instances[0].call(self.event.wait))

    async def release(self) -> None:
        self.event.set()
        await self.task


def test_full_queue_overloaded_timeout_and_cancel(double_model: Path) -> None:
    async def main() -> None:
        metrics = ServeMetrics()
        config = ModelServingConfig(batching=BatchingConfig(max_batch_size=4, max_queue_size=3), warmup=False)
        ex = await ModelExecutor.start(double_model, config, name="double", version="1", metrics=metrics)
        blocked = _Blocked(ex)
        await asyncio.sleep(0)
        running = asyncio.ensure_future(ex.infer(_feeds(1, 1)))  # dispatched, waits behind the blocker
        await asyncio.sleep(0)
        queued = [asyncio.ensure_future(ex.infer(_feeds(1, i))) for i in range(2)]
        late = asyncio.ensure_future(ex.infer(_feeds(1, 9), timeout_s=0.02))
        await asyncio.sleep(0)
        assert len(ex.batcher.scheduler) == 3
        with pytest.raises(Overloaded) as info:
            await ex.infer(_feeds(1, 5))
        assert info.value.retry_after_s > 0
        with pytest.raises(DeadlineExceeded):
            await late
        queued[1].cancel()
        await asyncio.sleep(0)
        assert len(ex.batcher.scheduler) == 1
        runs_before = ex.batcher.runs
        await blocked.release()
        await running
        await queued[0]
        assert ex.batcher.runs == runs_before + 1  # only the one request left in the queue ran
        body = metrics.render()[0].decode()
        assert 'honed_queue_depth{model="double",version="1"} 0.0' in body
        await ex.close()

    run(main)


def test_close_drains_queued_work(double_model: Path) -> None:
    async def main() -> None:
        config = ModelServingConfig(batching=BatchingConfig(max_batch_size=1), warmup=False)
        ex = await ModelExecutor.start(double_model, config, name="double", version="1")
        blocked = _Blocked(ex)
        await asyncio.sleep(0)
        tasks = [asyncio.ensure_future(ex.infer(_feeds(1, i))) for i in range(4)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(ex.close(drain=True))
        await asyncio.sleep(0)
        with pytest.raises(Unavailable):
            await ex.infer(_feeds(1, 0))
        await blocked.release()
        await closing
        assert all(t.done() and t.exception() is None for t in tasks)

    run(main)


def test_metrics_after_traffic(double_model: Path) -> None:
    async def main() -> None:
        metrics = ServeMetrics()
        ex = await ModelExecutor.start(double_model, ModelServingConfig(), name="double", version="1", metrics=metrics)
        bound = metrics.model("double", "1")
        for i in range(3):
            with bound.request():
                await ex.infer(_feeds(2, i))
        with pytest.raises(DataError), bound.request():
            await ex.infer({"x": np.zeros((1, 4), np.float32)})
        body, content_type = metrics.render()
        text = body.decode()
        assert content_type.startswith("text/plain")
        assert 'honed_requests_total{model="double",outcome="success",version="1"} 3.0' in text
        assert 'honed_requests_total{model="double",outcome="invalid",version="1"} 1.0' in text
        assert 'honed_batch_size_bucket{le="2.0",model="double",version="1"} 3.0' in text
        assert 'honed_compute_duration_seconds_count{model="double",version="1"} 3.0' in text
        assert 'honed_request_duration_seconds_count{model="double",version="1"} 4.0' in text
        assert 'honed_inflight_requests{model="double",version="1"} 0.0' in text
        await ex.close()

    run(main)


def test_pinned_instances(double_model: Path) -> None:
    config = ModelServingConfig(instances=3, threads_per_instance=1, pin_cores=True)
    assert instance_cores(config, available=[0, 1]) == [(0,), (1,), (0,)]
    assert instance_cores(config.with_(threads_per_instance=2), available=[0, 1, 2, 3]) == [(0, 1), (2, 3), (0, 1)]

    async def main() -> None:
        ex = await ModelExecutor.start(double_model, config, name="double", version="1")
        assert all(i.cores is not None and len(i.cores) == 1 for i in ex.instances)
        out = await ex.infer(_feeds(1, 3))
        assert out["y"].shape == (1, 4)
        await ex.close()

    run(main)


def test_bad_model_fails_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")

    async def main() -> None:
        with pytest.raises(InvalidModel):
            await ModelExecutor.start(bad, ModelServingConfig(), name="bad", version="1")

    run(main)


@pytest.fixture
def lookup_model(tmp_path: Path) -> Path:
    """y = table[i]: Gather from a [5, 2] table by int64 indices [N]; an index out of range fails the run."""
    i = helper.make_tensor_value_info("i", TensorProto.INT64, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    table = helper.make_tensor("table", TensorProto.FLOAT, [5, 2], [float(v) for v in range(10)])
    node = helper.make_node("Gather", ["table", "i"], ["y"], axis=0)
    return _save(helper.make_graph([node], "lookup", [i], [y], [table]), tmp_path / "lookup.onnx")


def test_one_bad_request_does_not_fail_its_batch(lookup_model: Path) -> None:
    async def main() -> None:
        config = ModelServingConfig(warmup=False)
        ex = await ModelExecutor.start(lookup_model, config, name="lookup", version="1")
        blocked = _Blocked(ex)
        await asyncio.sleep(0)
        first = asyncio.ensure_future(ex.infer({"i": np.array([0], np.int64)}))  # runs behind the blocker
        await asyncio.sleep(0)
        good = [asyncio.ensure_future(ex.infer({"i": np.array([k], np.int64)})) for k in (1, 2, 3)]
        bad = asyncio.ensure_future(ex.infer({"i": np.array([99], np.int64)}))
        await asyncio.sleep(0)
        assert len(ex.batcher.scheduler) == 4  # these four will share one run
        await blocked.release()
        await first
        for k, task in zip((1, 2, 3), good, strict=True):
            np.testing.assert_array_equal((await task)["y"], [[2.0 * k, 2.0 * k + 1]])
        with pytest.raises(DataError):
            await bad
        await ex.close()

    run(main)
