"""What request tracing costs ``honed serve``: throughput with tracing off, on at 100%, 1% and 0% sampling, one run.

Five real ``honed serve`` processes on 127.0.0.1 serve the same tiny MLP (x[1,16] -> y[1,8], honed's own test
model, so the server's per-request work and not the model dominates: the worst case for any per-request
overhead). Three of them export to an OTLP/HTTP receiver on 127.0.0.1 started here (it decodes every export with
opentelemetry-proto and counts the spans, so the export path really ran) and write their access lines to their
logs. ``loadgen.py`` drives one server at a time, rotating the order every round, so drift and neighbours on a
shared machine hit all five alike; every answer's status is checked and the first on each connection is
compared with in-process ONNX Runtime. Prints a markdown table of medians over rounds; ``x off`` is the median
over rounds of the ratio to tracing off *in the same round* (measurements seconds apart), which a busy machine's
drift spoils less than a ratio of medians. On a machine whose cores other work also wants, req/s mostly measures
the neighbours, so the table also gives the server's CPU time per request (psutil, the server process) and the
throughput that implies for a server that has its cores to itself (``x off by CPU``: CPU per request off over
CPU per request on)::

    PYTHONPATH=src python benchmarks/serve/tracing.py --rounds 5 --duration 3 --concurrency 8

A fourth server runs with tracing on at 0% sampling: the cost of the hooks alone, apart from sampled requests.
A fifth runs untraced like the first: how far its figures are from the first's is the noise of the run, the
margin any other row's distance from 1.000 has to clear.
Each server's idle CPU rate is measured once before the rounds and taken off the time it waits after a load
(a traced server's CPU is read only once its spans were exported, seconds later).

``--together`` loads all five servers at the same time instead, each with its own load generator and a fifth
of ``--concurrency``: on a shared machine whose speed changes from one second to the next (req/s of the same
server 20% apart between rounds), the variants then share the same seconds and the same neighbours, and each
round's ratios compare like with like. The servers compete for the cores, so req/s is each server's share
(one whose export thread also runs may get more than a fifth); CPU per request is the cleaner figure there.
The 100% server's export bursts raise every other server's CPU per request when they share the seconds, so
leave it out of such a run (``--variants off,1,0,off2``) and measure it one server at a time::

    PYTHONPATH=src python benchmarks/serve/tracing.py --rounds 10 --duration 3 --concurrency 8 \
        --together --variants off,1,0,off2
``--model FILE --input NAME=DIMxDIM`` serves another model with one FP32 input (e.g. the peers harness's MLP,
``python ../shared/peers/make_model.py /tmp/peers-model/model.onnx``, ``--input input=1x256``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from honed.hardware import detect_hardware
from honed.passes.tiny_models import make_mlp
from honed.runtime import create_session

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
from run import Server, cpu_seconds, free_port  # noqa: E402 - the serving benchmark's process handling

from tests.otlp import Receiver  # noqa: E402 - the OTLP/HTTP receiver the export tests use

VARIANTS = {
    "tracing off": None,
    "tracing on, 100%": "1",
    "tracing on, 1%": "0.01",
    "tracing on, 0%": "0",
    "tracing off, a second server": None,
}
"""0% keeps tracing on with no request sampled: what the hooks themselves cost, apart from the sampled requests.
The second untraced server is the same as the first: its distance from it is the run's noise floor."""
SHORT = dict(zip(("off", "100", "1", "0", "off2"), VARIANTS, strict=True))
"""``--variants`` names."""


def start(name: str, repo: Path, sample: str | None, sink: Receiver, log: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "honed", "serve", "--repository", str(repo), "--http", f"127.0.0.1:{port}"]
    cmd += ["--grpc", "off", "--instances", "1", "--threads", "1"]
    if sample is not None:
        cmd += ["--otlp-endpoint", sink.endpoint, "--trace-sample", sample]
    return Server(name, cmd, port, log)


SETTLE_S = 6.0
"""Quiet time after a traced server's load before the next measurement: longer than the SDK's 5 s export tick,
so the spans it still held are exported (and their CPU counted) before another server is measured."""


FIGURES = {"rps": "rps", "p50": "p50_ms", "p99": "p99_ms", "cpu": "cpu_us"}
IDLE_S = 8.0
"""Quiet time over which each server's idle CPU rate is measured before the rounds."""


def settle(sink: Receiver, limit_s: float = 60.0) -> None:
    """Wait until the receiver has taken no export for :data:`SETTLE_S` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    seen, since = len(sink.requests), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < SETTLE_S:
        time.sleep(0.25)
        if len(sink.requests) != seen:
            seen, since = len(sink.requests), time.monotonic()


def loadgen(server: Server, args: argparse.Namespace, expect: Path, duration: float, concurrency: int) -> list[str]:
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--url", server.url, "--model", "mlp", "--input", args.input]
    cmd += ["--encoding", "json", "--concurrency", str(concurrency), "--duration", str(duration)]
    return [*cmd, "--warmup", "0", "--expect", str(expect)]


def checked(server: Server, stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout)
    if result["errors"] or result["wrong"]:
        raise SystemExit(f"{server.url}: {result['errors']} errors, {result['wrong']} wrong answers: {result}")
    return result


class Meter:
    """A server's CPU seconds, less what it spends idle: the settle wait after a traced server's load (up to the
    SDK's export tick plus :data:`SETTLE_S`) would otherwise charge its idle housekeeping to its requests."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.idle_per_s = 0.0

    def calibrate(self, seconds: float) -> None:
        """Measure the idle CPU rate over ``seconds`` of no load."""
        before, t0 = cpu_seconds(self.server.ps), time.monotonic()
        time.sleep(seconds)
        self.idle_per_s = (cpu_seconds(self.server.ps) - before) / (time.monotonic() - t0)

    def start(self) -> tuple[float, float]:
        return cpu_seconds(self.server.ps), time.monotonic()

    def busy_us(self, mark: tuple[float, float], load_end: float, requests: int) -> float:
        """CPU µs per request since ``mark``, less the idle rate over the time since the load ended."""
        cpu = cpu_seconds(self.server.ps) - mark[0] - self.idle_per_s * (time.monotonic() - load_end)
        return cpu / max(1, requests) * 1e6


def load_one(
    meter: Meter, args: argparse.Namespace, expect: Path, duration: float, sink: Receiver | None
) -> dict[str, Any]:
    """One measurement of one server (no warm-up inside it, so the server's CPU time covers exactly the counted
    requests; with ``sink``, the server is traced, and its CPU is read once these requests' spans were exported)."""
    mark = meter.start()
    cmd = loadgen(meter.server, args, expect, duration, args.concurrency)
    result = checked(meter.server, subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    end = time.monotonic()
    if sink is not None:
        settle(sink)
    result["cpu_us"] = meter.busy_us(mark, end, result["requests"])
    return result


def load_together(
    meters: dict[str, Meter], args: argparse.Namespace, expect: Path, duration: float, sink: Receiver
) -> dict[str, dict[str, Any]]:
    """One measurement of every server at once, each with its own load generator (``--concurrency`` split among
    them): a machine's drift and neighbours then hit all variants in the same seconds."""
    each = max(1, args.concurrency // len(meters))
    marks = {name: meter.start() for name, meter in meters.items()}
    procs = {
        name: subprocess.Popen(loadgen(m.server, args, expect, duration, each), stdout=subprocess.PIPE, text=True)
        for name, m in meters.items()
    }
    outs = {name: proc.communicate()[0] for name, proc in procs.items()}
    end = time.monotonic()
    for name, proc in procs.items():
        if proc.returncode:
            raise SystemExit(f"the load generator for {name} failed ({proc.returncode})")
    results = {name: checked(meters[name].server, out) for name, out in outs.items()}
    settle(sink)
    for name, result in results.items():
        result["cpu_us"] = meters[name].busy_us(marks[name], end, result["requests"])
    return results


def measure(
    args: argparse.Namespace, variants: dict[str, str | None], repo: Path, expect: Path, sink: Receiver, out: Path
) -> tuple[dict[str, list[float]], ...]:
    """req/s, p50, p99 and server CPU µs per request, per variant and round."""
    servers = {
        name: start(name, repo, sample, sink, out / f"{i}.log") for i, (name, sample) in enumerate(variants.items())
    }
    meters = {name: Meter(server) for name, server in servers.items()}
    figures: dict[str, dict[str, list[float]]] = {key: {name: [] for name in variants} for key in FIGURES}
    try:
        for server in servers.values():
            server.wait_ready()
            load_one(
                meters[server.name], args, expect, args.warmup, sink if variants[server.name] is not None else None
            )
        settle(sink)
        for meter in meters.values():
            meter.calibrate(IDLE_S)
        names = list(variants)
        for r in range(args.rounds):
            if args.together:
                results = load_together(meters, args, expect, args.duration, sink)
            else:
                order = names[r % len(names) :] + names[: r % len(names)]
                results = {
                    name: load_one(
                        meters[name], args, expect, args.duration, sink if variants[name] is not None else None
                    )
                    for name in order
                }
            for name, result in results.items():
                for key, field in FIGURES.items():
                    figures[key][name].append(result[field])
                print(
                    f"round {r + 1} {name}: {result['rps']} req/s, {result['cpu_us']:.0f} µs CPU/req", file=sys.stderr
                )
    finally:
        for server in servers.values():
            server.stop()  # SIGTERM: each flushes its remaining spans
    return figures["rps"], figures["p50"], figures["p99"], figures["cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load on each server before measuring")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (with --together: in all)")
    parser.add_argument(
        "--together",
        action="store_true",
        help="load every server at once, each with its own load generator, instead of one after another",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the server logs")
    parser.add_argument(
        "--model", type=Path, default=None, help="an ONNX model with one FP32 input to serve instead of the tiny MLP"
    )
    parser.add_argument("--input", default="x=1x16", help="NAME=DIMxDIM of that input (loadgen's --input)")
    parser.add_argument(
        "--variants",
        default=",".join(SHORT),
        help=f"which servers to run, comma-separated among {', '.join(SHORT)} (off is always run)",
    )
    args = parser.parse_args()
    chosen = {"off", *(v.strip() for v in args.variants.split(",") if v.strip())}
    if unknown := chosen - set(SHORT):
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))}; choose among {', '.join(SHORT)}")
    variants = {SHORT[key]: VARIANTS[SHORT[key]] for key in SHORT if key in chosen}
    out = args.out or Path(tempfile.mkdtemp(prefix="honed-tracing-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    repo = out / "repo"
    (repo / "mlp" / "1").mkdir(parents=True, exist_ok=True)
    model = repo / "mlp" / "1" / "model.onnx"
    onnx.save(onnx.load(str(args.model)) if args.model else make_mlp(), str(model))
    name, _, dims = args.input.partition("=")
    shape = tuple(int(d) for d in dims.split("x"))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)  # loadgen's input (seed 0)
    expect = out / "expect.npy"
    session = create_session(model)
    np.save(expect, session.run({name: x})[session.outputs[0].name])

    with Receiver() as sink:
        rps, p50, p99, cpu = measure(args, variants, repo, expect, sink, out)
        spans = len(sink.spans())

    hw = detect_hardware()
    what = args.model.name if args.model else "the tiny MLP"
    mode = "all servers loaded at once" if args.together else "one server at a time"
    print(
        f"CPU: {hw.cpu_model or 'unknown'}; ISA: {', '.join(hw.isa) or 'unknown'}; {args.rounds} rounds; {what}; {mode}"
    )
    print(f"spans received by the OTLP receiver: {spans}\n")
    print("| variant | req/s | x off | server CPU µs/req | x off by CPU | p50 ms | p99 ms | req/s per round |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    cpu_off = statistics.median(cpu["tracing off"])
    for name in variants:
        ratio = statistics.median(v / off for v, off in zip(rps[name], rps["tracing off"], strict=True))
        cpu_us = statistics.median(cpu[name])
        rounds = ", ".join(f"{v:.0f}" for v in rps[name])
        print(
            f"| {name} | {statistics.median(rps[name]):.0f} | {ratio:.3f} | {cpu_us:.0f} | {cpu_off / cpu_us:.3f} | "
            f"{statistics.median(p50[name]):.2f} | {statistics.median(p99[name]):.2f} | {rounds} |"
        )


if __name__ == "__main__":
    main()
