"""Benchmark ``honed serve`` on the issue's MLP: batching on vs off, JSON vs binary, 1/8/32 in flight, same run.

Both variants run as real ``honed serve`` processes on 127.0.0.1 side by side; each is warmed up at 32 in
flight, then ``loadgen.py`` (a separate process) drives one of them at a time, alternating between them for every
encoding, concurrency and round, so drift and neighbours on a shared machine hit both alike. Every answer's
status is checked, and the first on each connection is compared with in-process ONNX Runtime. Server CPU per
request comes from psutil on the server process (its children included). The in-process ONNX Runtime figure
(the same session settings, built by honed's session factory, no server at all) is the limit a server can
approach.

Prints a markdown table with medians over rounds and two ratio columns: ``x off`` (req/s relative to the same
server with batching off, same encoding and concurrency) and ``% ORT`` (req/s as a share of the in-process limit
at batch 1). Make the model first (it is generated, never committed)::

    python ../shared/peers/make_model.py /tmp/peers-model/model.onnx
    PYTHONPATH=src python benchmarks/serve/run.py --model /tmp/peers-model/model.onnx --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
VARIANTS = {"batching on": [], "batching off": ["--no-batching"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def ort_limit(model: Path, seconds: float) -> dict[int, float]:
    """Rows/s of an in-process session (1 intra-op thread, as served) at batch 1 and 32."""
    from honed.runtime import RuntimeConfig, create_session

    session = create_session(model, RuntimeConfig(intra_op_threads=1, inter_op_threads=1))
    name = session.inputs[0].name
    result = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, 256)).astype(np.float32)
        for _ in range(20):
            session.run({name: x})
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.run({name: x})
            n += 1
        result[batch] = n * batch / (time.perf_counter() - start)
    return result


class Server:
    """One ``honed serve`` process serving ``model`` as ``mlp`` version 1."""

    def __init__(self, model: Path, flags: list[str], log: Path) -> None:
        self.repo = Path(tempfile.mkdtemp(prefix="honed-bench-"))
        (self.repo / "mlp" / "1").mkdir(parents=True)
        (self.repo / "mlp" / "1" / "model.onnx").symlink_to(model)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "honed", "serve", "--repository", str(self.repo)]
        cmd += ["--http", f"127.0.0.1:{self.port}", "--grpc", "off", *flags]
        self._log = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"honed serve exited with {self.proc.returncode}; see {self._log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/models/mlp/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"honed serve not ready after {timeout} s; see {self._log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def load(url: str, args: argparse.Namespace, encoding: str, concurrency: int, expect: Path, duration: float) -> Any:
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--encoding", encoding]
    cmd += ["--concurrency", str(concurrency), "--duration", str(duration), "--warmup", str(args.warmup)]
    cmd += ["--max-requests", str(args.max_requests), "--expect", str(expect)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("/tmp/peers-model/model.onnx"))
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--max-requests", type=int, default=100_000, help="requests per measurement, at most")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--encodings", default="json,binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="folder for results.jsonl and server logs")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model} not found; make it with: python ../shared/peers/make_model.py {args.model}")
    model = args.model.resolve()
    out = args.out or Path(tempfile.mkdtemp(prefix="honed-serve-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    concs = [int(c) for c in args.concurrency.split(",")]
    encodings = args.encodings.split(",")

    from honed.runtime import create_session

    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    expect = out / "expect.npy"
    session = create_session(model)
    np.save(expect, session.run({session.inputs[0].name: x})[session.outputs[0].name])

    # Both servers run side by side (an idle one costs nothing) and the measurements alternate between them in
    # short slices, so a busy neighbour on a shared machine hurts both variants alike.
    servers = {
        variant: Server(model, flags, out / f"{variant.replace(' ', '-')}.log") for variant, flags in VARIANTS.items()
    }
    records: list[dict[str, Any]] = []
    limits: list[dict[int, float]] = []
    try:
        for server in servers.values():
            server.wait_ready()
            load(server.url, args, "binary", 32, expect, 2.0)  # warm-up, discarded
        for rnd in range(1, args.rounds + 1):
            limits.append(ort_limit(model, 2.0))
            for encoding in encodings:
                for c in concs:
                    order = list(servers) if (rnd + c) % 2 else list(reversed(servers))
                    for variant in order:
                        server = servers[variant]
                        before = cpu_seconds(server.ps)
                        r = load(server.url, args, encoding, c, expect, args.duration)
                        used = cpu_seconds(server.ps) - before
                        # The CPU window includes the load generator's warm-up requests too.
                        sent = r["requests"] * (1 + args.warmup / max(r["duration_s"], 1e-9))
                        r.update(round=rnd, variant=variant, cpu_ms_per_req=1000 * used / max(sent, 1))
                        records.append(r)
                        print(json.dumps(r), file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    print(table(records, limits))
    print(f"\nraw results: {out / 'results.jsonl'}", file=sys.stderr)


def table(records: list[dict[str, Any]], limits: list[dict[int, float]]) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["variant"], r["encoding"], r["concurrency"]), []).append(r)
    limit1 = med([lim[1] for lim in limits])
    limit32 = med([lim[32] for lim in limits])
    lines = [
        "| server | encoding | in flight | req/s | p50 ms | p99 ms | server CPU ms/req | x off | % ORT b1 | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (variant, encoding, c), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        rps = med([r["rps"] for r in rs])
        off = groups.get(("batching off", encoding, c), [])
        ratio = rps / med([r["rps"] for r in off]) if off else float("nan")
        lines.append(
            f"| honed {variant} | {encoding} | {c} | {rps:,.0f} | {med([r['p50_ms'] or 0 for r in rs]):.2f} "
            f"| {med([r['p99_ms'] or 0 for r in rs]):.2f} | {med([r['cpu_ms_per_req'] for r in rs]):.2f} "
            f"| {ratio:.2f} | {100 * rps / limit1:.0f}% | {sum(r['errors'] + r['wrong'] for r in rs)} |"
        )
    lines.append(
        f"| onnxruntime in-process | - | - | {limit1:,.0f} (batch 1), {limit32:,.0f} rows/s (batch 32) | | | | | | |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
