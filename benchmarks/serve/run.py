"""Benchmark ``honed serve`` on the issue's MLP: batching on vs off, JSON vs binary, 1/8/32 in flight, same run.

Both variants run as real ``honed serve`` processes on 127.0.0.1 side by side; each is warmed up at 32 in
flight, then ``loadgen.py`` (a separate process) drives one of them at a time, alternating between them for every
encoding, concurrency and round, so drift and neighbours on a shared machine hit both alike. Every answer's
status is checked, and the first on each connection is compared with in-process ONNX Runtime. Server CPU per
request comes from psutil on the server process (its children included). The in-process ONNX Runtime figure
(the same session settings, built by honed's session factory, no server at all) is the limit a server can
approach.

With ``--peer pytriton --peer kserve`` (any peer of the peers harness, ``--peers`` names its folder) those servers
are started with the harness's own ``<peer>/serve.sh`` and join the same alternation under the same load
generator (binary only for peers that support it).

Prints a markdown table with medians over rounds and ratio columns: ``x off`` (req/s relative to honed with
batching off, same encoding and concurrency), ``x triton`` (relative to pytriton, when it ran) and ``% ORT b1``
(req/s as a share of the in-process limit at batch 1). Make the model first (it is generated, never committed)::

    python ../shared/peers/make_model.py /tmp/peers-model/model.onnx
    PYTHONPATH=src python benchmarks/serve/run.py --model /tmp/peers-model/model.onnx --rounds 3
    PYTHONPATH=src python benchmarks/serve/run.py --encodings json --concurrency 1,32 --peer pytriton --peer kserve
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
VARIANTS = {"honed batching on": [], "honed batching off": ["--no-batching"]}
BINARY_PEERS = {"pytriton", "kserve"}  # peers that speak the binary tensor extension


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
    """One server process (its whole process tree is measured and stopped), serving the model as ``mlp``."""

    def __init__(self, name: str, cmd: list[str], port: int, log: Path) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 600.0, model: str = "mlp") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}; see {self._log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/models/{model}/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{self.name} not ready after {timeout} s; see {self._log.name}")

    def stop(self) -> None:
        try:
            tree = [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _, alive = psutil.wait_procs(tree, timeout=10)
        for p in alive:  # children of the server we started that outlived it
            p.kill()
        self._log.close()


def honed_server(name: str, model: Path, flags: list[str], log: Path) -> Server:
    repo = Path(tempfile.mkdtemp(prefix="honed-bench-"))
    (repo / "mlp" / "1").mkdir(parents=True)
    (repo / "mlp" / "1" / "model.onnx").symlink_to(model)
    port = free_port()
    cmd = [sys.executable, "-m", "honed", "serve", "--repository", str(repo)]
    cmd += ["--http", f"127.0.0.1:{port}", "--grpc", "off", *flags]
    return Server(name, cmd, port, log)


def peer_server(peers: Path, name: str, model: Path, log: Path) -> Server:
    """A peer from the peers harness (``<peers>/<name>/serve.sh MODEL PORT``), driven by honed's load generator."""
    script = peers / name / "serve.sh"
    if not script.is_file():
        raise SystemExit(f"no peer {name!r}: {script} not found")
    port = free_port()
    return Server(name, ["bash", str(script), str(model), str(port)], port, log)


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
    parser.add_argument(
        "--peers", type=Path, default=HERE.parents[1].parent / "shared" / "peers", help="the peers harness folder"
    )
    parser.add_argument(
        "--peer", action="append", default=[], help="also run this peer (e.g. pytriton, kserve), same load, same run"
    )
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
    servers: dict[str, Server] = {}
    records: list[dict[str, Any]] = []
    limits: list[dict[int, float]] = []
    try:
        for name, flags in VARIANTS.items():
            servers[name] = honed_server(name, model, flags, out / f"{name.replace(' ', '-')}.log")
        for peer in args.peer:
            servers[peer] = peer_server(args.peers, peer, model, out / f"{peer}.log")
        for server in servers.values():
            server.wait_ready()
            load(server.url, args, "json", 32, expect, 2.0)  # warm-up, discarded
        for rnd in range(1, args.rounds + 1):
            limits.append(ort_limit(model, 2.0))
            for encoding in encodings:
                for c in concs:
                    names = list(servers) if rnd % 2 else list(reversed(servers))
                    k = (rnd + c) % len(names)
                    order = names[k:] + names[:k]
                    for variant in order:
                        server = servers[variant]
                        if encoding == "binary" and variant not in VARIANTS and variant not in BINARY_PEERS:
                            continue
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
    baselines = {"x off": "honed batching off"}
    if any(v == "pytriton" for v, _, _ in groups):
        baselines["x triton"] = "pytriton"
    limit1 = med([lim[1] for lim in limits])
    limit32 = med([lim[32] for lim in limits])
    ratio_head = "".join(f" {name} |" for name in baselines)
    lines = [
        "| server | encoding | in flight | req/s | p50 ms | p99 ms | server CPU ms/req |"
        f"{ratio_head} % ORT b1 | errors |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(baselines) + "---:|---:|",
    ]
    order = {v: i for i, v in enumerate([*VARIANTS, "pytriton", "kserve", "mlserver", "rayserve"])}
    for (variant, encoding, c), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][1], kv[0][2], order.get(kv[0][0], 99), kv[0][0])
    ):
        rps = med([r["rps"] for r in rs])
        ratios = ""
        for base in baselines.values():
            other = groups.get((base, encoding, c), [])
            ratios += f" {rps / med([r['rps'] for r in other]):.2f} |" if other else " - |"
        lines.append(
            f"| {variant} | {encoding} | {c} | {rps:,.0f} | {med([r['p50_ms'] or 0 for r in rs]):.2f} "
            f"| {med([r['p99_ms'] or 0 for r in rs]):.2f} | {med([r['cpu_ms_per_req'] for r in rs]):.2f} |"
            f"{ratios} {100 * rps / limit1:.0f}% | {sum(r['errors'] + r['wrong'] for r in rs)} |"
        )
    lines.append(f"\nonnxruntime in-process: {limit1:,.0f} rows/s at batch 1, {limit32:,.0f} rows/s at batch 32")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
