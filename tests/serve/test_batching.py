"""Dynamic batching: the pure policy with a fake clock, and the asyncio batcher under hypothesis arrival patterns."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honed.errors import BackendError, DeadlineExceeded, InvalidArgument, Overloaded, QueueTimeExceeded, Unavailable
from honed.serve.batching import Batcher, BatchScheduler, Request, RunDone, RunSlots, Tensors, merge, split
from honed.serve.config import BatchingConfig
from honed.serve.metrics import ServeMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _req(rows: int = 1, key: Hashable = (4,), at: float = 0.0, deadline: float | None = None) -> Request:
    return Request({"x": np.zeros((rows, 4), np.float32)}, rows, key, at, deadline)


# --- merge / split -----------------------------------------------------------------------------------------------


def test_merge_and_split_keep_order() -> None:
    reqs = [Request({"x": np.full((n, 2), i, np.float32)}, n, (2,), 0.0) for i, n in enumerate((1, 3, 2))]
    merged = merge(reqs)
    assert merged["x"].shape == (6, 2)
    parts = split({"y": merged["x"] * 10}, reqs)
    for i, (req, part) in enumerate(zip(reqs, parts, strict=True)):
        assert part["y"].shape == (req.rows, 2)
        assert np.all(part["y"] == 10 * i)


def test_single_request_passes_through() -> None:
    req = _req(2)
    assert merge([req]) is req.inputs
    out = {"y": np.ones(7)}
    assert split(out, [req])[0] is out


def test_split_refuses_outputs_without_batch_dim() -> None:
    with pytest.raises(BackendError, match="batch dimension"):
        split({"y": np.ones(3)}, [_req(1), _req(1)])


# --- the policy ----------------------------------------------------------------------------------------------------


def test_dispatches_at_once_without_waiting_for_the_window() -> None:
    s = BatchScheduler(BatchingConfig(max_queue_delay_ms=1000))
    s.add(_req(), 0.0)
    batch = s.take(0.0)
    assert batch is not None and len(batch) == 1
    assert s.wake_at(0.0) is None


def test_fills_up_to_max_rows_in_fifo_order() -> None:
    s = BatchScheduler(BatchingConfig(max_batch_size=5))
    reqs = [_req(2), _req(2), _req(2)]
    for r in reqs:
        s.add(r, 0.0)
    assert s.take(0.0) == reqs[:2]
    assert s.take(0.0) == reqs[2:]
    assert s.take(0.0) is None


def test_different_shapes_never_share_a_batch() -> None:
    s = BatchScheduler(BatchingConfig())
    a1, b1, a2 = _req(key=(4,)), _req(key=(5,)), _req(key=(4,))
    for r in (a1, b1, a2):
        s.add(r, 0.0)
    assert s.take(0.0) == [a1, a2]  # the oldest head's key goes first
    assert s.take(0.0) == [b1]


def test_disabled_batching_runs_one_request_at_a_time() -> None:
    s = BatchScheduler(BatchingConfig(enabled=False))
    reqs = [_req(), _req()]
    for r in reqs:
        s.add(r, 0.0)
    assert s.take(0.0) == reqs[:1]
    assert s.take(0.0) == reqs[1:]


def test_full_queue_is_overloaded_with_retry_after() -> None:
    s = BatchScheduler(BatchingConfig(max_queue_size=2, max_batch_size=2))
    s.add(_req(), 0.0)
    s.add(_req(), 0.0)
    s.record_run(2, 0.5)
    with pytest.raises(Overloaded) as info:
        s.add(_req(), 0.0, instances=1)
    assert info.value.retry_after_s == pytest.approx(0.5)  # one run of two rows drains it
    with pytest.raises(Overloaded) as info:
        s.add(_req(), 0.0, instances=2)
    assert info.value.retry_after_s == pytest.approx(0.25)


def test_expire_removes_only_late_requests() -> None:
    s = BatchScheduler(BatchingConfig(max_queue_time_ms=None))
    late, ok, forever = _req(deadline=1.0), _req(deadline=5.0), _req()
    for r in (late, ok, forever):
        s.add(r, 0.0)
    assert s.wake_at(0.0) == 1.0
    assert s.expire(1.0) == [late]
    assert len(s) == 2 and s.wake_at(1.0) == 5.0
    assert s.remove(ok) and not s.remove(ok)
    assert s.wake_at(1.0) is None
    assert s.take(9.0) == [forever]


def test_holds_for_a_preferred_size_only_when_arrivals_will_fill_it() -> None:
    config = BatchingConfig(max_batch_size=8, preferred_batch_sizes=(4,), max_queue_delay_ms=10)
    s = BatchScheduler(config)
    # Arrivals 1 ms apart: the missing rows come in a few ms, well inside the 10 ms delay, so holding pays.
    for i in range(4):
        s.add(_req(), i * 0.001)
        if 0 < i < 3:
            assert s.take(i * 0.001) is None
            assert s.wake_at(i * 0.001) == pytest.approx(0.010)
    batch = s.take(0.003)
    assert batch is not None and len(batch) == 4


def test_first_request_without_history_runs_at_once() -> None:
    s = BatchScheduler(BatchingConfig(max_batch_size=8, preferred_batch_sizes=(4,), max_queue_delay_ms=10))
    s.add(_req(), 0.0)
    assert s.take(0.0) is not None


def test_does_not_hold_when_arrivals_are_too_sparse() -> None:
    config = BatchingConfig(max_batch_size=8, preferred_batch_sizes=(4,), max_queue_delay_ms=10)
    s = BatchScheduler(config)
    s.add(_req(), 0.0)
    s.take(0.0)
    s.add(_req(), 0.050)  # 50 ms gap: three more rows would take far longer than the 10 ms delay
    batch = s.take(0.050)
    assert batch is not None and len(batch) == 1


def test_hold_ends_when_the_delay_runs_out() -> None:
    config = BatchingConfig(max_batch_size=8, preferred_batch_sizes=(4,), max_queue_delay_ms=10)
    s = BatchScheduler(config)
    s.add(_req(), 0.0)
    s.add(_req(), 0.0)  # arrival gap ~0: worth holding
    assert s.take(0.0) is None
    batch = s.take(0.010)
    assert batch is not None and len(batch) == 2


# --- the asyncio batcher under arrival patterns --------------------------------------------------------------------


@dataclass
class FakeRunner:
    """Runs a batch when the test says so: y = 2 * x, computed on the merged batch and split back."""

    log: list[list[Request]]
    pending: tuple[list[Request], RunDone] | None = None

    def run_batch(self, requests: list[Request], done: RunDone) -> None:
        assert self.pending is None, "a runner got a second batch while busy"
        self.log.append(list(requests))
        self.pending = (requests, done)

    def finish(self, seconds: float = 0.001) -> bool:
        """Complete the pending batch, reporting ``seconds`` of compute for it."""
        if self.pending is None:
            return False
        requests, done = self.pending
        self.pending = None
        done(self, requests, split({"y": merge(requests)["x"] * 2}, requests), seconds)
        return True


@dataclass
class Caller:
    x: np.ndarray[Any, Any]
    key: Hashable
    task: asyncio.Task[Tensors]
    request_cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_submit = st.tuples(
    st.just("submit"),
    st.sampled_from([3, 4]),
    st.integers(1, 4),
    st.one_of(st.none(), st.none(), st.floats(0.001, 0.02)),
)
ops = st.lists(
    st.one_of(
        _submit,
        _submit,
        st.tuples(st.just("advance"), st.floats(0, 0.01)),
        st.tuples(st.just("finish"), st.integers(0, 2)),
        st.tuples(st.just("cancel"), st.integers(0, 1000)),
    ),
    min_size=8,
    max_size=80,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=ops,
    runners=st.integers(1, 3),
    max_batch=st.integers(1, 8),
    preferred=st.lists(st.integers(1, 8), max_size=2),
    enabled=st.booleans(),
)
def test_every_caller_gets_exactly_its_own_result(
    ops: list[tuple[Any, ...]], runners: int, max_batch: int, preferred: list[int], enabled: bool
) -> None:
    config = BatchingConfig(
        enabled=enabled,
        max_batch_size=max_batch,
        max_queue_delay_ms=5,
        preferred_batch_sizes=tuple(p for p in preferred if p <= max_batch),
        max_queue_size=12,
    )
    asyncio.run(_drive(ops, runners, config))


async def _drive(ops: list[tuple[Any, ...]], n_runners: int, config: BatchingConfig) -> None:
    clock = FakeClock()
    log: list[list[Request]] = []
    runners = [FakeRunner(log) for _ in range(n_runners)]
    batcher = Batcher(config, runners, clock=clock)
    callers: list[Caller] = []
    counter = 0

    async def settle() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    def check_invariants() -> None:
        # An idle instance never sits next to a queue it could run, unless the policy holds for a preferred size.
        if len(batcher.scheduler) and batcher.busy < n_runners:
            assert config.preferred_batch_sizes and config.enabled
            assert batcher.scheduler.wake_at(clock()) is not None

    for op in ops:
        if op[0] == "submit":
            _, width, rows, timeout = op
            rows = min(rows, config.max_batch_size)
            x = (counter + np.arange(rows * width, dtype=np.float32)).reshape(rows, width)
            counter += rows * width
            task = asyncio.ensure_future(batcher.submit({"x": x}, rows, (width,), timeout))
            callers.append(Caller(x, (width,), task))
        elif op[0] == "advance":
            clock.now += op[1]
            batcher.poll()
        elif op[0] == "finish":
            runners[op[1] % n_runners].finish()
        elif op[0] == "cancel" and callers:
            callers[op[1] % len(callers)].task.cancel()
        await settle()
        check_invariants()

    # Drain: keep finishing and letting time pass until every caller has its answer.
    for _ in range(1000):
        if all(c.task.done() for c in callers) and not len(batcher.scheduler) and not batcher.busy:
            break
        progressed = any([r.finish() for r in runners])
        if not progressed:
            clock.now += 0.005
            batcher.poll()
        await settle()
    assert all(c.task.done() for c in callers)

    computed: dict[int, int] = {}
    for batch in log:
        assert sum(r.rows for r in batch) <= config.max_batch_size or len(batch) == 1
        assert len({r.key for r in batch}) == 1, "incompatible shapes shared a batch"
        if not config.enabled:
            assert len(batch) == 1
        for r in batch:
            computed[id(r.inputs["x"])] = computed.get(id(r.inputs["x"]), 0) + 1
    assert all(n == 1 for n in computed.values()), "a request was computed twice"

    for c in callers:
        ran = id(c.x) in computed
        if c.task.cancelled():
            continue  # cancelled while queued (then never computed) or while running (result dropped)
        exc = c.task.exception()
        if exc is None:
            assert ran
            np.testing.assert_array_equal(c.task.result()["y"], c.x * 2)
        elif isinstance(exc, DeadlineExceeded):
            assert not ran, "a request that timed out in the queue was computed anyway"
        else:
            assert isinstance(exc, Overloaded)
            assert not ran and exc.retry_after_s > 0
    # Requests cancelled before dispatch were never computed: every computed request belongs to a live caller
    # or to one cancelled after it was dispatched (its log entry precedes the cancellation).
    assert len(computed) <= len(callers)


def test_cancelled_request_leaves_the_queue_and_is_never_computed() -> None:
    async def main() -> None:
        log: list[list[Request]] = []
        runner = FakeRunner(log)
        batcher = Batcher(BatchingConfig(), [runner], clock=FakeClock())
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(batcher.submit({"x": np.zeros((1, 2), np.float32)}, 1, (2,)))
        await asyncio.sleep(0)
        assert len(batcher.scheduler) == 1  # the runner is busy with the first
        second.cancel()
        await asyncio.sleep(0)
        assert len(batcher.scheduler) == 0
        runner.finish()
        await first
        assert [len(b) for b in log] == [1]
        assert second.cancelled()

    asyncio.run(main())


def test_timeout_in_queue_raises_deadline_exceeded() -> None:
    async def main() -> None:
        clock = FakeClock()
        runner = FakeRunner([])
        batcher = Batcher(BatchingConfig(), [runner], clock=clock)
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))
        late = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,), 0.5))
        await asyncio.sleep(0)
        clock.now += 0.6
        batcher.poll()
        with pytest.raises(DeadlineExceeded):
            await late
        runner.finish()
        await first

    asyncio.run(main())


def test_close_drains_then_refuses() -> None:
    async def main() -> None:
        runner = FakeRunner([])
        batcher = Batcher(BatchingConfig(max_batch_size=1), [runner], clock=FakeClock())
        tasks = [asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,))) for _ in range(3)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close(drain=True))
        for _ in range(10):
            await asyncio.sleep(0)
            runner.finish()
        await closing
        assert all(t.done() and t.exception() is None for t in tasks)
        with pytest.raises(Unavailable):
            await batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,))

    asyncio.run(main())


def test_close_without_drain_fails_queued_requests() -> None:
    async def main() -> None:
        runner = FakeRunner([])
        batcher = Batcher(BatchingConfig(max_batch_size=1), [runner], clock=FakeClock())
        tasks = [asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,))) for _ in range(3)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close(drain=False))
        await asyncio.sleep(0)
        runner.finish()
        await closing
        assert tasks[0].exception() is None
        assert all(isinstance(t.exception(), Unavailable) for t in tasks[1:])

    asyncio.run(main())


# --- load shedding by time -----------------------------------------------------------------------------------------


def test_scheduler_sheds_at_the_queue_time_bound_and_deadlines_still_win() -> None:
    sched = BatchScheduler(BatchingConfig(max_queue_time_ms=50))
    patient, hasty = _req(at=0.0), _req(at=0.0, deadline=0.01)
    sched.add(patient, 0.0)
    sched.add(hasty, 0.0)
    assert patient.shed_at == pytest.approx(0.05) and sched.wake_at(0.0) == pytest.approx(0.01)
    assert sched.expire(0.01) == [hasty] and hasty.timed_out(0.01)
    assert sched.expire(0.049) == []
    assert sched.expire(0.05) == [patient] and not patient.timed_out(0.05)
    assert len(sched) == 0
    unbounded = BatchScheduler(BatchingConfig(max_queue_time_ms=None))
    unbounded.add(_req(at=0.0), 0.0)
    assert unbounded.wake_at(0.0) is None and unbounded.expire(1e9) == []


@pytest.mark.parametrize("bound", [0, -1, True, "50", float("nan"), float("inf")])
def test_queue_time_bound_must_be_a_positive_number(bound: Any) -> None:
    with pytest.raises(InvalidArgument, match="max_queue_time_ms"):
        BatchingConfig(max_queue_time_ms=bound)
    assert BatchingConfig.from_dict({"max_queue_time_ms": 250}).to_dict()["max_queue_time_ms"] == 250.0


class Rig:
    """A batcher over one :class:`FakeRunner` on a fake clock, with metrics for model ``m``."""

    def __init__(self, config: BatchingConfig) -> None:
        self.clock = FakeClock()
        self.metrics = ServeMetrics(clock=self.clock)
        self.log: list[list[Request]] = []
        self.runner = FakeRunner(self.log)
        self.batcher = Batcher(config, [self.runner], clock=self.clock, metrics=self.metrics.model("m", "1"))


def test_batcher_sheds_a_request_that_waited_past_the_bound_without_running_it() -> None:
    async def main() -> None:
        rig = Rig(BatchingConfig(max_queue_time_ms=100, max_queue_size=2))
        clock, metrics, log, runner, batcher = rig.clock, rig.metrics, rig.log, rig.runner, rig.batcher
        running = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))
        await asyncio.sleep(0)
        stale = asyncio.ensure_future(batcher.submit({"x": np.full((1, 2), 2, np.float32)}, 1, (2,)))
        timed = asyncio.ensure_future(batcher.submit({"x": np.full((1, 2), 3, np.float32)}, 1, (2,), 0.05))
        await asyncio.sleep(0)
        assert len(batcher.scheduler) == 2  # the only runner is busy with the first
        clock.now += 0.06
        batcher.poll()
        with pytest.raises(DeadlineExceeded):  # the V2 timeout still ends a request first when it is shorter
            await timed
        clock.now += 0.04  # the stale request has now waited exactly the bound
        batcher.poll()
        with pytest.raises(QueueTimeExceeded) as info:
            await stale
        assert info.value.retry_after_s > 0 and "queue-time bound" in str(info.value)
        runner.finish()
        assert (await running)["y"][0, 0] == 2.0
        assert [len(b) for b in log] == [1]  # neither refused request ran
        assert _shed(metrics, "queue_time") == 1 and _shed(metrics, "queue_full") == 0
        # A request that finds an idle runner runs at once, however long the bound has been passed since.
        clock.now += 10
        fresh = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))
        await asyncio.sleep(0)
        clock.now += 10
        batcher.poll()
        runner.finish()
        assert (await fresh)["y"].shape == (1, 2)

    asyncio.run(main())


def test_a_full_queue_of_stale_requests_sheds_them_before_refusing_a_new_one() -> None:
    async def main() -> None:
        rig = Rig(BatchingConfig(max_queue_time_ms=100, max_queue_size=1))
        clock, metrics, runner, batcher = rig.clock, rig.metrics, rig.runner, rig.batcher
        running = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))
        await asyncio.sleep(0)
        stale = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):  # full, and nothing in it has waited too long yet
            await batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,))
        assert _shed(metrics, "queue_full") == 1
        clock.now += 0.2  # no timer ran: the next arrival itself finds the stale request and sheds it
        newer = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))
        await asyncio.sleep(0)
        with pytest.raises(QueueTimeExceeded):
            await stale
        assert len(batcher.scheduler) == 1 and _shed(metrics, "queue_time") == 1
        runner.finish()
        await running
        runner.finish()
        await newer

    asyncio.run(main())


def test_a_request_that_would_wait_past_the_bound_is_refused_before_it_is_queued() -> None:
    s = BatchScheduler(BatchingConfig(max_queue_time_ms=1000, max_batch_size=4))
    s.record_run(4, 0.5)  # 125 ms per row
    fits = [_req(4), _req(4)]
    for r in fits:
        s.add(r, 0.0)  # 0, then 4 rows ahead: 0 and 500 ms
    last = _req(1)
    s.add(last, 0.0)  # 8 rows ahead: exactly the bound, which still fits
    assert s.estimated_wait(1) == pytest.approx(1.125) and len(s) == 3
    assert s.estimated_wait(1, running_rows=4) == pytest.approx(1.375)  # a run in progress: half done on average
    refused = _req(1)
    with pytest.raises(QueueTimeExceeded) as info:
        s.add(refused, 0.0)
    assert info.value.retry_after_s == pytest.approx(1.125)  # when the 9 rows ahead have likely run
    assert "would wait about 1125 ms" in str(info.value) and "1000 ms queue-time bound" in str(info.value)
    assert not refused.queued and len(s) == 3 and s.rows == 9 and refused.shed_at is None
    s.add(refused, 0.0, instances=2)  # two runners share the work ahead: 562 ms
    assert refused.queued and s.estimated_wait(2) == pytest.approx(0.625)
    assert isinstance(info.value, Overloaded)  # a refusal to retry later, like a full queue


def test_the_time_a_request_spent_before_the_queue_counts_against_the_bound() -> None:
    s = BatchScheduler(BatchingConfig(max_queue_time_ms=1000, max_batch_size=4))
    s.record_run(4, 0.5)  # 125 ms per row
    s.add(_req(4), 0.0)  # 500 ms of work ahead of what comes next
    late = _req(1)
    late.waited_s = 0.6  # read and decoded for 600 ms before it reached the queue
    with pytest.raises(QueueTimeExceeded) as info:  # 500 + 600 ms > 1000 ms
        s.add(late, 0.0)
    assert "would wait about 500 ms" in str(info.value) and "after 600 ms reading and decoding it" in str(info.value)
    early = _req(1)
    early.waited_s = 0.4
    s.add(early, 0.0)  # 500 + 400 ms fits
    assert early.shed_at == pytest.approx(0.6)  # shed 1000 ms after it arrived, not after it was queued
    # with nothing ahead, however long it took to arrive, it is queued and a free runner still takes it
    idle = BatchScheduler(BatchingConfig(max_queue_time_ms=1000, max_batch_size=4))
    idle.record_run(4, 0.5)
    slow = _req(1)
    slow.waited_s = 5.0
    idle.add(slow, 0.0)
    assert slow.queued and slow.shed_at == pytest.approx(0.001)
    assert idle.take(0.0) == [slow]


def test_the_batcher_sheds_by_the_time_since_arrival() -> None:
    async def main() -> None:
        rig = Rig(BatchingConfig(max_queue_time_ms=100, max_batch_size=1))
        clock, metrics, log, runner, batcher = rig.clock, rig.metrics, rig.log, rig.runner, rig.batcher
        x = {"x": np.ones((1, 2), np.float32)}
        running = asyncio.ensure_future(batcher.submit(x, 1, (2,), waited_s=5.0))  # a free runner takes it anyway
        await asyncio.sleep(0)
        assert len(log) == 1
        late = asyncio.ensure_future(batcher.submit(x, 1, (2,), waited_s=0.09))  # arrived 90 ms ago
        await asyncio.sleep(0)
        clock.now += 0.011  # 101 ms since it arrived, 11 ms in the queue
        batcher.poll()
        with pytest.raises(QueueTimeExceeded):
            await late
        assert _shed(metrics, "queue_time") == 1 and len(log) == 1
        runner.finish()
        await running

    asyncio.run(main())


def test_without_a_measured_run_or_a_bound_the_estimate_refuses_nothing() -> None:
    unmeasured = BatchScheduler(BatchingConfig(max_queue_time_ms=1, max_batch_size=64))
    for _ in range(50):
        unmeasured.add(_req(64), 0.0)
    assert unmeasured.estimated_wait(1) is None and len(unmeasured) == 50
    unbounded = BatchScheduler(BatchingConfig(max_queue_time_ms=None, max_batch_size=64))
    unbounded.record_run(1, 10.0)
    for _ in range(50):
        unbounded.add(_req(64), 0.0)
    assert unbounded.estimated_wait(1) == pytest.approx(32_000.0) and len(unbounded) == 50


def test_the_batcher_refuses_on_its_own_estimate_at_once_and_counts_it() -> None:
    async def main() -> None:
        rig = Rig(BatchingConfig(max_queue_time_ms=100, max_batch_size=1))
        metrics, log, runner, batcher = rig.metrics, rig.log, rig.runner, rig.batcher

        def submit() -> asyncio.Future[Tensors]:
            return asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,)))

        first = submit()
        await asyncio.sleep(0)
        runner.finish(seconds=0.06)  # the batcher now knows: 60 ms per one-row run
        await first
        # One runs; the others find half a row (the run in progress, 30 ms) and 1.5 rows (90 ms) ahead.
        admitted = [submit() for _ in range(3)]
        await asyncio.sleep(0)
        assert len(batcher.scheduler) == 2
        with pytest.raises(QueueTimeExceeded) as info:  # 2.5 rows ahead: 150 ms > 100 ms, refused without waiting
            await batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, (2,))
        assert info.value.retry_after_s == pytest.approx(0.15)
        assert "2 rows queued and 1 running ahead" in str(info.value)
        assert (
            _shed(metrics, "estimate") == 1 and _shed(metrics, "queue_time") == 0 and _shed(metrics, "queue_full") == 0
        )
        assert len(batcher.scheduler) == 2 and len(log) == 2  # the refused request never queued nor ran
        while runner.finish(seconds=0.06):
            await asyncio.sleep(0)
        assert [(await a)["y"].shape for a in admitted] == [(1, 2)] * 3
        assert _shed(metrics, "estimate") == 1

    asyncio.run(main())


def _shed(metrics: ServeMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("honed_shed_total", {"model": "m", "reason": reason})
    return 0.0 if value is None else value


# --- run slots shared by a model's versions -----------------------------------------------------------------------


def test_versions_sharing_slots_run_in_turn_and_a_waiting_version_goes_first() -> None:
    async def main() -> None:
        slots = RunSlots(1)
        log: list[list[Request]] = []
        production, candidate = FakeRunner(log), FakeRunner(log)
        a = Batcher(BatchingConfig(max_batch_size=1), [production], clock=FakeClock(), slots=slots)
        b = Batcher(BatchingConfig(max_batch_size=1), [candidate], clock=FakeClock(), slots=slots)
        x = {"x": np.ones((1, 2), np.float32)}
        first = asyncio.ensure_future(a.submit(x, 1, (2,)))
        await asyncio.sleep(0)
        canary = asyncio.ensure_future(b.submit({"x": np.full((1, 2), 3, np.float32)}, 1, (2,)))
        second = asyncio.ensure_future(a.submit(x, 1, (2,)))
        await asyncio.sleep(0)
        # The candidate's runner is idle, but the model's one slot is taken by production's run.
        assert production.pending is not None and candidate.pending is None
        assert len(b.scheduler) == 1 and len(a.scheduler) == 1 and slots.in_use == 1
        production.finish()
        # The version that waited for the slot runs before the one whose run just ended runs again.
        assert candidate.pending is not None and production.pending is None and len(a.scheduler) == 1
        candidate.finish()
        assert production.pending is not None
        production.finish()
        np.testing.assert_array_equal((await first)["y"], x["x"] * 2)
        np.testing.assert_array_equal((await second)["y"], x["x"] * 2)
        np.testing.assert_array_equal((await canary)["y"], np.full((1, 2), 6, np.float32))
        assert slots.in_use == 0

    asyncio.run(main())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(st.sampled_from(["submit", "finish"]), st.integers(0, 5)), min_size=1, max_size=60),
    capacity=st.integers(1, 3),
    resized=st.integers(1, 4),
)
def test_runs_in_progress_never_exceed_the_shared_slots(
    steps: list[tuple[str, int]], capacity: int, resized: int
) -> None:
    async def main() -> None:
        slots = RunSlots(capacity)
        runners = [[FakeRunner([]) for _ in range(2)] for _ in range(3)]
        batchers = [Batcher(BatchingConfig(max_batch_size=2), rs, clock=FakeClock(), slots=slots) for rs in runners]
        every = [r for rs in runners for r in rs]
        tasks: list[asyncio.Future[Tensors]] = []
        limit, before = capacity, 0
        for i, (what, which) in enumerate(steps):
            if i == len(steps) // 2:
                slots.resize(resized)  # runs already in progress go on; new ones start only under the new cap
                limit = resized
            if what == "submit":
                x = {"x": np.full((1, 2), i, np.float32)}
                tasks.append(asyncio.ensure_future(batchers[which % 3].submit(x, 1, (2,))))
            else:
                every[which].finish()
            await asyncio.sleep(0)
            running = sum(r.pending is not None for r in every)
            assert running == slots.in_use
            assert running <= max(limit, before), f"a run started with {before} in progress and {limit} slots"
            before = running
        while any(r.finish() for r in every):
            await asyncio.sleep(0)
        for i, task in enumerate(tasks):
            assert task.done(), f"request {i} was left waiting for a slot"
            assert task.result()["y"].shape == (1, 2)
        assert slots.in_use == 0

    asyncio.run(main())
