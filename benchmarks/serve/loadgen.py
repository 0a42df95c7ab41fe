"""honed's bounded, closed-loop load generator for V2 REST infer (JSON or binary tensors) on loopback.

``--concurrency`` connections each keep exactly one request in flight (HTTP/1.1 keep-alive) until ``--duration``
seconds have passed *or* ``--max-requests`` requests were answered, whichever comes first; ``--warmup`` seconds
of requests before that are sent but not counted. Every answer's status is checked and the first answer on each
connection is decoded and compared with the expected output (``--expect``, an .npy file), so a server that
answers fast but wrong cannot score. Prints one JSON line: rps, p50/p90/p99 in ms, requests, errors.

The client is a few dozen lines over asyncio streams (uvloop when installed) rather than an HTTP library, so it
spends as little of a small machine's CPU as possible on itself.

    python benchmarks/serve/loadgen.py --url http://127.0.0.1:8000 --model mlp --input input=1x256 \\
        --encoding binary --concurrency 32 --duration 10 --max-requests 200000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np


def build_request(host: str, port: int, model: str, name: str, x: np.ndarray[Any, Any], encoding: str) -> bytes:
    """The full HTTP request bytes for one batch of ``x`` (sent unchanged on every iteration)."""
    path = f"/v2/models/{model}/infer"
    shape = list(x.shape)
    if encoding == "json":
        body = json.dumps(
            {"inputs": [{"name": name, "shape": shape, "datatype": "FP32", "data": x.ravel().tolist()}]},
            separators=(",", ":"),
        ).encode()
        extra = "Content-Type: application/json\r\n"
    else:
        raw = x.astype("<f4").tobytes()
        header = json.dumps(
            {
                "inputs": [
                    {"name": name, "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
                ],
                "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
            },
            separators=(",", ":"),
        ).encode()
        body = header + raw
        extra = f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = b""
    return status, headers, body


def decode_output(headers: dict[str, str], body: bytes) -> np.ndarray[Any, Any]:
    """The first output of a V2 answer, from JSON data or the binary extension."""
    length = headers.get("inference-header-content-length")
    if length is not None:
        header = json.loads(body[: int(length)])
        out = header["outputs"][0]
        raw = body[int(length) : int(length) + out["parameters"]["binary_data_size"]]
        return np.frombuffer(raw, "<f4").reshape(out["shape"])
    out = json.loads(body)["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


async def worker(
    host: str, port: int, request: bytes, expect: np.ndarray[Any, Any] | None, state: dict[str, Any]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    latencies: list[float] = state["latencies"]
    first = True
    try:
        while not state["stop"]:
            start = time.perf_counter()
            writer.write(request)
            status, headers, body = await read_response(reader)
            end = time.perf_counter()
            if status != 200:
                state["errors"] += 1
                if len(state["error_samples"]) < 3:
                    state["error_samples"].append(f"{status}: {body[:200]!r}")
                if headers.get("connection", "").lower() == "close":
                    return
                continue
            if first and expect is not None:
                first = False
                got = decode_output(headers, body)
                if got.shape != expect.shape or not np.allclose(got, expect, rtol=1e-3, atol=1e-4):
                    state["wrong"] += 1
            if state["counting"]:
                latencies.append(end - start)
                if len(latencies) >= state["max_requests"]:
                    state["stop"] = True
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    name, _, dims = args.input.partition("=")
    shape = tuple(int(d) for d in dims.split("x"))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if args.save_input:
        np.save(args.save_input, x)
    expect = np.load(args.expect) if args.expect else None
    request = build_request(host, port, args.model, name, x, args.encoding)
    state: dict[str, Any] = {
        "stop": False,
        "counting": args.warmup <= 0,
        "latencies": [],
        "errors": 0,
        "wrong": 0,
        "error_samples": [],
        "max_requests": args.max_requests,
    }
    tasks = [asyncio.ensure_future(worker(host, port, request, expect, state)) for _ in range(args.concurrency)]
    if args.warmup > 0:
        await asyncio.sleep(args.warmup)
        state["counting"] = True
    start = time.perf_counter()
    deadline = start + args.duration
    while not state["stop"] and time.perf_counter() < deadline and not all(t.done() for t in tasks):
        await asyncio.sleep(0.02)
    state["stop"] = True
    elapsed = time.perf_counter() - start
    await asyncio.wait(tasks, timeout=args.timeout)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            state["errors"] += 1
            state["error_samples"].append(repr(t.exception())[:200])
    lat = sorted(state["latencies"])

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None

    return {
        "encoding": args.encoding,
        "concurrency": args.concurrency,
        "requests": len(lat),
        "duration_s": round(elapsed, 3),
        "rps": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None,
        "errors": state["errors"],
        "wrong": state["wrong"],
        "error_samples": state["error_samples"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--input", default="input=1x256", help="NAME=DIMxDIM of the one FP32 input")
    parser.add_argument("--encoding", choices=("json", "binary"), default="json")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--expect", help=".npy file with the expected output for the input (seed 0)")
    parser.add_argument("--save-input", help="write the input (seed 0) to this .npy file and continue")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
