"""What request tracing costs ``honed serve``: throughput with tracing off, on at 100% and at 1% sampling, one run.

Three real ``honed serve`` processes on 127.0.0.1 serve the same tiny MLP (x[1,16] -> y[1,8], honed's own test
model, so the server's per-request work and not the model dominates: the worst case for any per-request
overhead). Two of them export to an OTLP/HTTP receiver on 127.0.0.1 started here (it decodes every export with
opentelemetry-proto and counts the spans, so the export path really ran) and write their access lines to their
logs. ``loadgen.py`` drives one server at a time, rotating the order every round, so drift and neighbours on a
shared machine hit all three alike; every answer's status is checked and the first on each connection is
compared with in-process ONNX Runtime. Prints a markdown table of medians over rounds with the ratio to
tracing off::

    PYTHONPATH=src python benchmarks/serve/tracing.py --rounds 3 --duration 5 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from honed.hardware import detect_hardware
from honed.passes.tiny_models import make_mlp
from honed.runtime import create_session

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import Server, free_port  # noqa: E402 - the serving benchmark's process handling

VARIANTS = {"tracing off": None, "tracing on, 100%": "1", "tracing on, 1%": "0.01"}


class SpanSink:
    """An OTLP/HTTP receiver that counts the spans it is sent."""

    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                message = ExportTraceServiceRequest()
                message.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                count = sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
                with sink.lock:
                    sink.spans += count
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def start(name: str, repo: Path, sample: str | None, sink: SpanSink, log: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "honed", "serve", "--repository", str(repo), "--http", f"127.0.0.1:{port}"]
    cmd += ["--grpc", "off", "--instances", "1", "--threads", "1"]
    if sample is not None:
        cmd += ["--otlp-endpoint", sink.endpoint, "--trace-sample", sample]
    return Server(name, cmd, port, log)


def load(url: str, args: argparse.Namespace, expect: Path, duration: float) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--model", "mlp", "--input", "x=1x16"]
    cmd += ["--encoding", "json", "--concurrency", str(args.concurrency), "--duration", str(duration)]
    cmd += ["--warmup", str(args.warmup), "--expect", str(expect)]
    result: dict[str, Any] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    if result["errors"] or result["wrong"]:
        raise SystemExit(f"{url}: {result['errors']} errors, {result['wrong']} wrong answers: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="folder for the server logs")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="honed-tracing-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    repo = out / "repo"
    (repo / "mlp" / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(make_mlp(), str(repo / "mlp" / "1" / "model.onnx"))
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)  # loadgen's input (seed 0)
    expect = out / "expect.npy"
    np.save(expect, create_session(repo / "mlp" / "1" / "model.onnx").run({"x": x})["y"])

    sink = SpanSink()
    servers = {
        name: start(name, repo, sample, sink, out / f"{i}.log") for i, (name, sample) in enumerate(VARIANTS.items())
    }
    rps: dict[str, list[float]] = {name: [] for name in VARIANTS}
    p50: dict[str, list[float]] = {name: [] for name in VARIANTS}
    p99: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for server in servers.values():
            server.wait_ready()
            load(server.url, args, expect, 2.0)
        names = list(VARIANTS)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                result = load(servers[name].url, args, expect, args.duration)
                rps[name].append(result["rps"])
                p50[name].append(result["p50_ms"])
                p99[name].append(result["p99_ms"])
                print(f"round {r + 1} {name}: {result['rps']} req/s", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()  # SIGTERM: each flushes its remaining spans
    sink.server.shutdown()

    base = statistics.median(rps["tracing off"])
    hw = detect_hardware()
    print(f"CPU: {hw.cpu_model or 'unknown'}; ISA: {', '.join(hw.isa) or 'unknown'}; {args.rounds} rounds")
    print(f"spans received by the OTLP receiver: {sink.spans}\n")
    print("| variant | req/s (median) | x off | p50 ms | p99 ms | req/s per round |")
    print("|---|---:|---:|---:|---:|---|")
    for name in VARIANTS:
        med = statistics.median(rps[name])
        rounds = ", ".join(f"{v:.0f}" for v in rps[name])
        print(
            f"| {name} | {med:.0f} | {med / base:.3f} | {statistics.median(p50[name]):.2f} | "
            f"{statistics.median(p99[name]):.2f} | {rounds} |"
        )


if __name__ == "__main__":
    main()
