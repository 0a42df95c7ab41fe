"""Which HTTP stack should carry honed's V2 REST adapter? Measure the candidates on this machine, same run.

Each candidate serves the same tiny model through the same dataplane and codec; only the HTTP layer differs:

* ``raw-uvicorn``: honed's plain ASGI app (``honed.serve.http.HttpApp``) on uvicorn with httptools + uvloop
* ``starlette-uvicorn``: the same endpoints behind Starlette's router and Request/Response, same uvicorn
* ``raw-granian``: the plain ASGI app on granian (Rust HTTP server, ASGI interface, 1 worker, uvloop)
* ``raw-uvicorn-h11``: the plain ASGI app on uvicorn's pure-Python h11 parser (what a bare ``uvicorn`` gives)

A closed-loop aiohttp client sends batch-1 V2 JSON infer requests at each concurrency for a fixed time; rounds
alternate between candidates. Prints a markdown table with req/s, latency percentiles and the server's CPU time per
request (its whole process tree; the steadiest figure on a shared machine), and each candidate's req/s relative to
``starlette-uvicorn`` (the common baseline). Needs: ``pip install -e '.[bench-http]'``.

    PYTHONPATH=src python benchmarks/http_stack/compare.py --duration 5 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
CANDIDATES = ("raw-uvicorn", "starlette-uvicorn", "raw-granian", "raw-uvicorn-h11")


def make_model(folder: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = folder / "tiny" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))
    return folder


# -- the server side (run in a subprocess: ``compare.py --serve CANDIDATE REPO PORT``) ------------------------------


def _lifespan_app(inner_factory):  # type: ignore[no-untyped-def]
    """An ASGI app that builds honed's dataplane on lifespan startup (granian starts apps this way)."""
    state: dict[str, object] = {}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["app"] = await inner_factory()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await state["app"](scope, receive, send)  # type: ignore[operator]

    return app


async def _dataplane(repo: Path):  # type: ignore[no-untyped-def]
    from honed.serve.server import build

    dataplane = build(repo, defaults={"warmup": False})
    await dataplane.start()
    return dataplane


def _starlette_app(dataplane):  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from honed.serve.dataplane import error_message, status_for
    from honed.serve.protocol import rest

    async def infer(request: Request) -> Response:
        try:
            body = await request.body()
            header = request.headers.get("inference-header-content-length")
            decoded = rest.decode_request(body, int(header) if header else None)
            response = await dataplane.infer(request.path_params["name"], None, decoded)
            out, _ = rest.encode_response(response, decoded)
            return Response(out, media_type="application/json")
        except Exception as exc:
            return JSONResponse({"error": error_message(exc)}, status_code=status_for(exc)[0])

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": await dataplane.ready()})

    return Starlette(
        routes=[
            Route("/v2/health/ready", ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        ]
    )


def serve(candidate: str, repo: Path, port: int) -> None:
    from honed.serve.http import HttpApp

    async def raw_factory():  # type: ignore[no-untyped-def]
        return HttpApp(await _dataplane(repo))

    async def starlette_factory():  # type: ignore[no-untyped-def]
        return _starlette_app(await _dataplane(repo))

    factory = starlette_factory if candidate == "starlette-uvicorn" else raw_factory
    app = _lifespan_app(factory)
    if candidate == "raw-granian":
        from granian.constants import Interfaces, Loops
        from granian.server import Server as Granian

        sys.modules["__honed_bench_app__"] = type(sys)("__honed_bench_app__")
        sys.modules["__honed_bench_app__"].app = app  # type: ignore[attr-defined]
        Granian(
            "__honed_bench_app__:app",
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            workers=1,
            loop=Loops.uvloop,
            log_enabled=False,
        ).serve()
        return
    import uvicorn

    http = "h11" if candidate == "raw-uvicorn-h11" else "httptools"
    uvicorn.run(app, host="127.0.0.1", port=port, http=http, loop="uvloop", access_log=False, log_level="warning")


# -- the client side ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def load(port: int, concurrency: int, duration: float) -> dict[str, float]:
    import aiohttp

    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}).encode()
    url = f"http://127.0.0.1:{port}/v2/models/tiny/infer"
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                start = time.monotonic()
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.monotonic() - start)

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "count": len(latencies),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": errors,
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (granian runs its worker as a child)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", nargs=3, metavar=("CANDIDATE", "REPO", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), int(args.serve[2]))
        return
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_model(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for _ in range(args.rounds):
            for candidate in args.candidates:
                port = free_port()
                cmd = [sys.executable, str(HERE), "--serve", candidate, str(repo), str(port)]
                proc = subprocess.Popen(cmd, env=env)
                try:
                    wait_ready(port, proc)
                    asyncio.run(load(port, 8, 1.0))  # warm-up
                    for conc in args.concurrency:
                        cpu0 = tree_cpu_seconds(proc.pid)
                        cell = asyncio.run(load(port, conc, args.duration))
                        cell["cpu_us"] = 1e6 * (tree_cpu_seconds(proc.pid) - cpu0) / max(1.0, cell["count"])
                        results.setdefault((candidate, conc), []).append(cell)
                finally:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    base = (
        {c: statistics.median(r["rps"] for r in results[("starlette-uvicorn", c)]) for c in args.concurrency}
        if ("starlette-uvicorn" in args.candidates)
        else {}
    )
    print(f"\nbatch-1 V2 JSON infer, tiny model, {args.duration:g} s per cell, median of {args.rounds} round(s)\n")
    print("| stack | in flight | req/s | vs starlette-uvicorn | p50 ms | p99 ms | server CPU us/req | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for candidate in args.candidates:
        for conc in args.concurrency:
            runs = results[(candidate, conc)]
            rps = statistics.median(r["rps"] for r in runs)
            rel = f"{rps / base[conc]:.2f}x" if conc in base else "-"
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            cpu = statistics.median(r["cpu_us"] for r in runs)
            errs = int(sum(r["errors"] for r in runs))
            print(f"| {candidate} | {conc} | {rps:.0f} | {rel} | {p50:.2f} | {p99:.2f} | {cpu:.0f} | {errs} |")


if __name__ == "__main__":
    main()
