"""Does a noisy principal raise a quiet one's latency? One real ``honed serve``, an access policy of two principals
with rate limits, in one run: the quiet principal alone, then with the noisy one far above its limit.

The server (127.0.0.1, REST only, one instance and one thread) serves honed's tiny MLP (x[1,16] -> y[1,8]) behind an
access policy whose ``limits`` give ``quiet`` and ``noisy`` a token bucket each. The quiet principal sends
open-loop at a low steady rate (``--quiet-rps``, each request sent on schedule whether or not the previous one
was answered, so a stalled server shows up as latency and not as fewer requests); the noisy one, from a separate
process so that its client work does not delay the quiet client's event loop, sends open-loop at
``--noisy-rps``, far above its own limit. Phases alternate (quiet alone, both, quiet alone, both, ...) so drift on
a shared machine hits both conditions alike. Every quiet answer must be 200 with the output ONNX Runtime gives;
every noisy refusal must be 429 with a ``Retry-After`` header. Prints the quiet principal's p50/p99 alone and
with the noisy one, the p99 ratio, and how the noisy one's requests were answered::

    PYTHONPATH=src python benchmarks/serve/noisy_principal.py --phases 4 --phase-s 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "src")]
from loadgen import build_request, read_response  # noqa: E402 - the serving benchmark's HTTP client
from run import Server, cpu_seconds, free_port  # noqa: E402 - the serving benchmark's process handling

QUIET, NOISY = "quiet-principal-token-0001", "noisy-principal-token-0002"


def policy_text(quiet_limit: float, noisy_limit: float) -> str:
    from honed.serve.access import token_hash

    return (
        "principals:\n"
        f"  - {{name: quiet, token_sha256: {token_hash(QUIET)}, models: ['*'], actions: [infer, read]}}\n"
        f"  - {{name: noisy, token_sha256: {token_hash(NOISY)}, models: ['*'], actions: [infer, read]}}\n"
        "limits:\n"
        "  principals:\n"
        f"    quiet: {{rps: {quiet_limit:g}, burst: {max(1.0, quiet_limit / 2):g}}}\n"
        f"    noisy: {{rps: {noisy_limit:g}, burst: {max(1.0, noisy_limit / 2):g}}}\n"
    )


def request_bytes(url: str, token: str) -> bytes:
    host, _, port = url.removeprefix("http://").partition(":")
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    raw = build_request(host, int(port), "mlp", "x", x, "json")
    head, sep, body = raw.partition(b"\r\n\r\n")
    return head + f"\r\nAuthorization: Bearer {token}".encode() + sep + body


async def open_loop(url: str, token: str, rps: float, duration: float, connections: int) -> list[dict[str, Any]]:
    """Send at ``rps`` for ``duration`` s on a pool of keep-alive connections; one record per request."""
    host, _, port = url.removeprefix("http://").partition(":")
    payload = request_bytes(url, token)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, int(port)))
    records: list[dict[str, Any]] = []

    async def one(scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(payload)
            await writer.drain()
            status, headers, body = await read_response(reader)
            # Latency from when the request was due, so waiting for a free connection counts too.
            records.append(
                {
                    "ms": (time.perf_counter() - scheduled) * 1e3,
                    "status": status,
                    "retry_after": headers.get("retry-after"),
                    "body": body if status == 200 and len(records) < 1 else None,
                }
            )
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
        finally:
            pool.put_nowait((reader, writer))

    start = time.perf_counter()
    tasks = []
    n = int(rps * duration)
    for i in range(n):
        due = start + i / rps
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return records


def noisy_main(args: argparse.Namespace) -> None:
    records = asyncio.run(open_loop(args.url, NOISY, args.noisy_rps, args.phase_s, args.noisy_connections))
    counts = Counter(r["status"] for r in records)
    refusals = [r for r in records if r["status"] != 200]
    print(
        json.dumps(
            {
                "statuses": {str(k): v for k, v in counts.items()},
                "refusals_with_retry_after": sum(1 for r in refusals if r["status"] == 429 and r["retry_after"]),
                "refusals": len(refusals),
            }
        )
    )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=4, help="alternating phases, quiet alone first")
    parser.add_argument("--phase-s", type=float, default=15.0)
    parser.add_argument("--quiet-rps", type=float, default=20.0)
    parser.add_argument("--quiet-limit", type=float, default=100.0)
    parser.add_argument("--noisy-rps", type=float, default=400.0)
    parser.add_argument("--noisy-limit", type=float, default=20.0)
    parser.add_argument("--noisy-connections", type=int, default=8)
    parser.add_argument(
        "--refusal-requests", type=int, default=3000, help="refused requests sent back to back at the end (0: none)"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the policy, model and server log")
    parser.add_argument("--role", choices=["driver", "noisy"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "noisy":
        noisy_main(args)
        return

    from honed.hardware import detect_hardware
    from honed.passes.tiny_models import make_mlp
    from honed.runtime import create_session

    out = args.out or Path(tempfile.mkdtemp(prefix="honed-noisy-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    repo = out / "repo"
    (repo / "mlp" / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(make_mlp(), str(repo / "mlp" / "1" / "model.onnx"))
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    want = create_session(repo / "mlp" / "1" / "model.onnx").run({"x": x})["y"]
    policy = out / "access.yaml"
    policy.write_text(policy_text(args.quiet_limit, args.noisy_limit), encoding="utf-8")
    port = free_port()
    cmd = [sys.executable, "-m", "honed", "serve", "--repository", str(repo), "--http", f"127.0.0.1:{port}"]
    cmd += ["--grpc", "off", "--instances", "1", "--threads", "1", "--access", str(policy)]
    server = Server("honed", cmd, port, out / "server.log")
    quiet: dict[str, list[float]] = {"alone": [], "with noisy": []}
    server_cpu: dict[str, float] = {"alone": 0.0, "with noisy": 0.0}
    noisy_runs: list[dict[str, Any]] = []
    bad: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    raise SystemExit(f"honed serve did not get ready; see {out / 'server.log'}") from None
                time.sleep(0.3)
        asyncio.run(open_loop(server.url, QUIET, args.quiet_rps, 2.0, 4))  # warm-up, not counted
        for phase in range(args.phases):
            condition = "with noisy" if phase % 2 else "alone"
            noisy = None
            if condition == "with noisy":
                noisy_cmd = [sys.executable, __file__, "--role", "noisy", "--url", server.url]
                noisy_cmd += ["--noisy-rps", str(args.noisy_rps), "--phase-s", str(args.phase_s)]
                noisy_cmd += ["--noisy-connections", str(args.noisy_connections)]
                noisy = subprocess.Popen(noisy_cmd, stdout=subprocess.PIPE, text=True)
                time.sleep(0.5)  # the noisy one is at full rate before the quiet one's phase starts
            before = cpu_seconds(server.ps)
            records = asyncio.run(open_loop(server.url, QUIET, args.quiet_rps, args.phase_s - 1.0, 4))
            server_cpu[condition] += cpu_seconds(server.ps) - before
            for r in records:
                if r["status"] != 200:
                    bad.append(f"quiet got {r['status']}")
                elif r["body"] is not None:
                    got = np.asarray(json.loads(r["body"])["outputs"][0]["data"], dtype=np.float32)
                    if not np.allclose(got, want.ravel(), rtol=1e-5, atol=1e-6):
                        bad.append("quiet got a wrong answer")
            quiet[condition] += [r["ms"] for r in records if r["status"] == 200]
            if noisy is not None:
                stdout, _ = noisy.communicate(timeout=args.phase_s + 60)
                noisy_runs.append(json.loads(stdout.strip().splitlines()[-1]))
        refusal_us = None
        if args.refusal_requests > 0:
            time.sleep(2.0)  # the noisy principal's bucket refills to its burst; the rest are refused
            before = cpu_seconds(server.ps)
            blast = asyncio.run(open_loop(server.url, NOISY, 1e9, args.refusal_requests / 1e9, 4))
            refused = sum(1 for r in blast if r["status"] == 429)
            refusal_us = (cpu_seconds(server.ps) - before) / len(blast) * 1e6
    finally:
        server.stop()

    hw = detect_hardware()
    statuses: Counter[str] = Counter()
    for run in noisy_runs:
        statuses.update(run["statuses"])
    refusals = sum(run["refusals"] for run in noisy_runs)
    with_retry = sum(run["refusals_with_retry_after"] for run in noisy_runs)
    alone_p99, noisy_p99 = pct(quiet["alone"], 99), pct(quiet["with noisy"], 99)
    isa = ", ".join(hw.isa) or "unknown"
    print(f"CPU: {hw.cpu_model or 'unknown'}; ISA: {isa}; usable cores: {len(hw.usable_cores)}")
    print(
        f"quiet {args.quiet_rps:g} req/s (limit {args.quiet_limit:g}); noisy {args.noisy_rps:g} req/s "
        f"(limit {args.noisy_limit:g}); {args.phases} phases of {args.phase_s:g} s\n"
    )
    print("| quiet principal | requests | p50 ms | p99 ms | max ms | server CPU s/s |")
    print("|---|---:|---:|---:|---:|---:|")
    measured_s = (args.phase_s - 1.0) * (args.phases / 2)
    for condition, values in quiet.items():
        print(
            f"| {condition} | {len(values)} | {statistics.median(values):.2f} | {pct(values, 99):.2f} | "
            f"{max(values):.2f} | {server_cpu[condition] / measured_s:.3f} |"
        )
    print(f"\nquiet p99 with noisy / alone: {noisy_p99 / alone_p99:.3f} (target <= 1.10)")
    # The noisy client sends at a fixed rate, so over the measured windows it sent about noisy_rps x their length.
    extra_us = (server_cpu["with noisy"] - server_cpu["alone"]) / (args.noisy_rps * measured_s) * 1e6
    print(f"server CPU per noisy request (the extra over quiet alone): {extra_us:.0f} µs")
    print(
        f"noisy answers: {dict(sorted(statuses.items()))}; refusals {refusals}, of which 429 with Retry-After "
        f"{with_retry}"
    )
    if refusal_us is not None:
        print(
            f"server CPU per request, {len(blast)} noisy requests back to back on 4 connections "
            f"({refused} of them 429): {refusal_us:.0f} µs"
        )
    if bad:
        print(f"PROBLEMS: {Counter(bad)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
