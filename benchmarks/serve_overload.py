"""Overload benchmark for ``honed serve``'s load shedding: Magika at 3x its capacity, open loop.

A real ``honed serve`` process serves Magika (the model inside the installed ``magika`` package) on 127.0.0.1,
fed real features of files of this Python's standard library. The benchmark then

1. measures the unloaded latency (one request in flight) and the capacity (answers/s with ``--concurrency``
   requests kept in flight, closed loop);
2. drives ``--load`` x capacity for ``--duration`` seconds with an open-loop client (arrivals on a fixed
   schedule, whatever the answers do, as real clients behave), recording every answer's status, latency and
   ``Retry-After``;
3. right after the load stops, probes with one request in flight for ``--probe`` seconds and finds when the
   median latency is back to normal (within 1.5x the unloaded p50, and stays there).

It prints a markdown table and checks the work item's targets: the admitted requests' p99 within 2x the unloaded
p99 plus the queue-time bound, every refusal a 429 with ``Retry-After``, p50 back to normal within 5 s. The
exit status is 1 when a target is missed.

    PYTHONPATH=src python benchmarks/serve_overload.py --duration 60
    PYTHONPATH=src python benchmarks/serve_overload.py --duration 20 --bound-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from serve.run import Server, free_port  # benchmarks/serve/run.py: a server process, stopped with its children

from honed.demo import MagikaFeatureConfig, magika_features, magika_model_dir, stdlib_files
from honed.hardware import detect_hardware
from honed.serve.config import DEFAULT_MAX_QUEUE_TIME_MS

MODEL = "magika"
INFER = f"/v2/models/{MODEL}/infer"


@dataclass(frozen=True)
class Answer:
    sent: float
    """When it was sent, seconds on the benchmark's monotonic clock."""
    latency: float
    status: int
    """The HTTP status, or 0 for a connection error."""
    retry_after: str | None


def _bodies(count: int) -> list[bytes]:
    """JSON infer bodies of real Magika features, one file each."""
    config = MagikaFeatureConfig.from_model_dir(magika_model_dir())
    bodies: list[bytes] = []
    for path in stdlib_files(count * 4):
        data = path.read_bytes()
        if len(data) < config.min_file_size:
            continue
        head, tail = data[: config.block_size], data[-config.block_size :]
        row = np.asarray(magika_features(head, tail, config), dtype=np.int32).reshape(1, -1)
        tensor = {"name": "bytes", "datatype": "INT32", "shape": list(row.shape), "data": row.ravel().tolist()}
        bodies.append(json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode())
        if len(bodies) == count:
            break
    return bodies


def _start_server(repo: Path, bound_ms: float | None, batch: int | None, log: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "honed", "serve", "--repository", str(repo), "--http", f"127.0.0.1:{port}"]
    cmd += ["--grpc", "off"]
    if batch is not None:
        cmd += ["--max-batch-size", str(batch)]
    if bound_ms is not None:
        cmd += ["--max-queue-time-ms", f"{bound_ms:g}"]
    server = Server("honed", cmd, port, log)
    server.wait_ready(300, MODEL)
    return server


async def _send(session: Any, url: str, body: bytes, start: float) -> Answer:
    import aiohttp

    sent = time.monotonic()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            await response.read()
            return Answer(sent - start, time.monotonic() - sent, response.status, response.headers.get("Retry-After"))
    except aiohttp.ClientError:
        return Answer(sent - start, time.monotonic() - sent, 0, None)


async def _closed_loop(session: Any, url: str, bodies: list[bytes], concurrency: int, seconds: float) -> list[Answer]:
    start = time.monotonic()
    answers: list[Answer] = []

    async def worker(offset: int) -> None:
        i = offset
        while time.monotonic() - start < seconds:
            answer = await _send(session, url, bodies[i % len(bodies)], start)
            answers.append(answer)
            i += concurrency
            if answer.status != 200:  # a polite client: wait as told (at most a second) instead of spinning
                await asyncio.sleep(min(1.0, float(answer.retry_after or 1)))

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return answers


async def _open_loop(session: Any, url: str, bodies: list[bytes], rate: float, seconds: float) -> list[Answer]:
    """Send at ``rate`` per second on a fixed schedule for ``seconds``; the answers of every request sent."""
    start = time.monotonic()
    tasks: list[asyncio.Task[Answer]] = []
    n = 0
    while (due := n / rate) < seconds:
        delay = start + due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(_send(session, url, bodies[n % len(bodies)], start)))
        n += 1
    return list(await asyncio.gather(*tasks))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def _window_p50s(probe: list[Answer], window: float = 1.0) -> list[float]:
    """The p50 (ms) of the probe's answers in each ``window`` after the load stopped (NaN: none answered)."""
    end = max((a.sent for a in probe), default=0.0)
    return [
        _pct([a.latency for a in probe if a.status == 200 and w * window <= a.sent < (w + 1) * window], 50)
        for w in range(int(end // window) + 1)
    ]


def _recovery(p50s: list[float], normal_p50_ms: float, window: float = 1.0) -> float | None:
    """Seconds after the load stopped until the end of the first window whose p50 is within 1.5x the unloaded
    p50 (None: none was, within the probe)."""
    for w, p50 in enumerate(p50s):
        if p50 <= 1.5 * normal_p50_ms:
            return (w + 1) * window
    return None


async def _benchmark(args: argparse.Namespace, url: str) -> dict[str, Any]:
    import aiohttp

    bodies = _bodies(64)
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _closed_loop(session, url, bodies, 8, 2.0)  # warm the server and the connection pool
        unloaded = await _closed_loop(session, url, bodies, 1, args.unloaded)
        capacity_run = await _closed_loop(session, url, bodies, args.concurrency, args.capacity)
        served = [a for a in capacity_run if a.status == 200]
        capacity = len(served) / args.capacity
        rate = args.load * capacity
        metrics = url.split("/v2/")[0] + "/metrics"
        async with session.get(metrics) as response:
            before = _shed_counts(await response.text())
        overload = await _open_loop(session, url, bodies, rate, args.duration)
        probe = await _closed_loop(session, url, bodies, 1, args.probe)
        async with session.get(metrics) as response:
            after = _shed_counts(await response.text())
    shed = {reason: value - before.get(reason, 0.0) for reason, value in after.items()}
    return {
        "unloaded": unloaded,
        "capacity": capacity,
        "rate": rate,
        "overload": overload,
        "probe": probe,
        "shed": shed,
    }


def _shed_counts(exposition: str) -> dict[str, float]:
    """``honed_shed_total`` by reason, from the server's own metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "honed_shed"
        for sample in family.samples
        if sample.name == "honed_shed_total"
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of overload (default 60)")
    parser.add_argument("--load", type=float, default=3.0, help="offered load as a multiple of capacity")
    parser.add_argument(
        "--bound-ms",
        type=float,
        default=None,
        help=f"--max-queue-time-ms (default: the server's, {DEFAULT_MAX_QUEUE_TIME_MS:g})",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=1,
        help="rows per model run (default 1, the plan's placement for Magika, whose run time grows linearly with "
        "its rows; 0: the server's default)",
    )
    parser.add_argument("--unloaded", type=float, default=5.0, help="seconds of the unloaded run")
    parser.add_argument("--capacity", type=float, default=8.0, help="seconds of the capacity run")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight in the capacity run")
    parser.add_argument("--probe", type=float, default=10.0, help="seconds of probing after the load stops")
    parser.add_argument("--connections", type=int, default=512, help="client connections at most")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.max_batch_size == 0:
        args.max_batch_size = None

    bound_ms = DEFAULT_MAX_QUEUE_TIME_MS if args.bound_ms is None else args.bound_ms
    work = Path(tempfile.mkdtemp(prefix="honed-overload-"))
    (work / "repo" / MODEL / "1").mkdir(parents=True)
    shutil.copy(magika_model_dir() / "model.onnx", work / "repo" / MODEL / "1" / "model.onnx")
    server = _start_server(work / "repo", args.bound_ms, args.max_batch_size, work / "serve.log")
    try:
        run = asyncio.run(_benchmark(args, server.url + INFER))
    finally:
        server.stop()

    unloaded = [a.latency for a in run["unloaded"] if a.status == 200]
    overload: list[Answer] = run["overload"]
    admitted = [a.latency for a in overload if a.status == 200]
    refused = [a for a in overload if a.status != 200]
    refused_429 = [a for a in refused if a.status == 429 and a.retry_after is not None]
    others = statistics.multimode([a.status for a in refused if a not in refused_429]) if refused else []
    u50, u99, o99 = _pct(unloaded, 50), _pct(unloaded, 99), _pct(admitted, 99)
    target_ms = 2 * u99 + bound_ms
    p50s = _window_p50s(run["probe"])
    recovery = _recovery(p50s, u50)
    retry_after = sorted({int(a.retry_after) for a in refused_429 if a.retry_after is not None})
    hw = detect_hardware()
    figures = {
        "isa": list(hw.isa),
        "cpu": hw.cpu_model,
        "bound_ms": bound_ms,
        "max_batch_size": args.max_batch_size,
        "duration_s": args.duration,
        "unloaded_p50_ms": u50,
        "unloaded_p99_ms": u99,
        "capacity_rps": run["capacity"],
        "offered_rps": run["rate"],
        "sent": len(overload),
        "admitted": len(admitted),
        "admitted_rps": len(admitted) / args.duration,
        "admitted_p50_ms": _pct(admitted, 50),
        "admitted_p99_ms": o99,
        "refused": len(refused),
        "refused_429_with_retry_after": len(refused_429),
        "other_statuses": others,
        "retry_after_values_s": retry_after,
        "refusal_p50_ms": _pct([a.latency for a in refused], 50),
        "refusal_p99_ms": _pct([a.latency for a in refused], 99),
        "shed_by_reason": run["shed"],
        "recovery_s": recovery,
        "probe_p50_ms_by_second": p50s,
    }
    checks = {
        f"admitted p99 <= 2x unloaded p99 + bound ({target_ms:.1f} ms)": o99 <= target_ms,
        "every refusal is a 429 with Retry-After": len(refused_429) == len(refused),
        "p50 back to normal within 5 s": recovery is not None and recovery <= 5.0,
    }
    batch = "server default" if args.max_batch_size is None else args.max_batch_size
    print(f"ISA: {' '.join(hw.isa)}; bound {bound_ms:g} ms; max batch {batch}; {args.load:g}x for {args.duration:g} s")
    print(
        "| unloaded p50 / p99 | capacity | offered | admitted | admitted p50 / p99 | refused (429 + Retry-After) "
        "| refusal p50 / p99 | shed by reason | Retry-After | p50 normal after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    reasons = ", ".join(f"{k} {v:.0f}" for k, v in sorted(run["shed"].items()) if v)
    print(
        f"| {u50:.1f} / {u99:.1f} ms | {run['capacity']:.0f} req/s | {run['rate']:.0f} req/s "
        f"| {len(admitted)} ({len(admitted) / args.duration:.0f} req/s) | {_pct(admitted, 50):.1f} / {o99:.1f} ms "
        f"| {len(refused)} ({len(refused_429)}) | {figures['refusal_p50_ms']:.1f} / {figures['refusal_p99_ms']:.1f} ms "
        f"| {reasons or '-'} "
        f"| {', '.join(map(str, retry_after)) or '-'} s "
        f"| {'never' if recovery is None else f'{recovery:.1f} s'} |"
    )
    print("p50 by second after the load stopped (ms): " + ", ".join(f"{v:.0f}" for v in p50s))
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    if args.json:
        args.json.write_text(json.dumps({**figures, "checks": checks}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
