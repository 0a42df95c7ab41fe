"""What a rollout costs a server: throughput and p99 of one ``honed serve --registry`` process without a rollout and
with one at 25% canary weight mirroring 10% of requests, measured alternately in one run.

The model is honed's tiny MLP (``x[N,16] -> 32 -> 24 -> y[N,8]``, float32) registered twice (version 2's last bias
differs by 1e-6, so its answers match version 1's to the load generator's tolerance). The rollout never decides (its
``--min-requests`` cannot be met), so each round measures routing, mirroring and observation at a fixed weight;
between rounds it is aborted and started again. Prints a Markdown table; nothing is written but a temp folder.

    PYTHONPATH=src python benchmarks/serve/rollout.py --duration 4 --rounds 2 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from honed.passes.tiny_models import make_mlp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import Server, free_port  # noqa: E402  (benchmarks/serve/run.py: process handling shared by both)

_WEIGHT = re.compile(r'honed_rollout_weight\{model="mlp",version="2"\} ([\d.]+)')


def mlp(path: Path, nudge: float) -> Path:
    """honed's tiny MLP, its last bias moved by ``nudge`` (a different artifact with the same answers)."""
    model = make_mlp(opset=17)
    bias = next(i for i in model.graph.initializer if i.name == "b3")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(nudge), "b3"))
    onnx.save(model, str(path))
    return path


def honed(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "honed", *args], check=True, env=env, capture_output=True)


def weight(url: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        match = _WEIGHT.search(r.read().decode())
    return None if match is None else float(match.group(1))


def wait_weight(url: str, want: float | None, limit_s: float = 60.0) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if weight(url) == want:
            return
        time.sleep(0.2)
    raise SystemExit(f"the server did not reach rollout weight {want} in {limit_s} s")


def scrape(url: str) -> dict[str, float]:
    """The server's counters this benchmark reads, summed over the model's versions."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    sums = {"requests": 0.0, "runs": 0.0, "compute_s": 0.0}
    for key, family in (
        ("requests", "honed_requests_total"),
        ("runs", "honed_batch_size_count"),
        ("compute_s", "honed_compute_duration_seconds_sum"),
    ):
        for match in re.finditer(rf'^{family}\{{[^}}]*model="mlp"[^}}]*\}} ([\d.e+-]+)$', text, re.M):
            sums[key] += float(match.group(1))
    return sums


def load(server: Server, args: argparse.Namespace, expect: Path) -> dict[str, Any]:
    """One closed-loop measurement, with the server's CPU time, model runs and compute time per answered request
    (mirrored runs included in runs and compute, not in requests)."""
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--url", server.url, "--model", "mlp", "--input", "x=1x16"]
    cmd += ["--encoding", "json"]
    cmd += ["--concurrency", str(args.concurrency), "--duration", str(args.duration), "--warmup", "1"]
    cmd += ["--expect", str(expect)]
    before, cpu = scrape(server.url), server.ps.cpu_times()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    after, cpu_after = scrape(server.url), server.ps.cpu_times()
    result = dict(json.loads(out.strip().splitlines()[-1]))
    answered = max(after["requests"] - before["requests"], 1.0)
    busy = (cpu_after.user + cpu_after.system) - (cpu.user + cpu.system)
    result["cpu_us"] = busy / answered * 1e6
    result["runs_per_1k"] = (after["runs"] - before["runs"]) / answered * 1000
    result["compute_us"] = (after["compute_s"] - before["compute_s"]) / answered * 1e6
    return result


CONFIGS = {  # name -> the rollout's --mirror (None: no rollout)
    "no rollout": None,
    "rollout 25%, no mirror": 0.0,
    "rollout 25%, mirror 10%": 0.1,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll-s", type=float, default=1.0, help="the server's --rollout-poll-s (serve's default 1)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="honed-rollout-bench-"))
    db = f"sqlite:///{work / 'registry.db'}"
    env = {**os.environ, "HONED_REGISTRY": db, "HONED_ARTIFACTS": str(work / "artifacts"), "HONED_ACTOR": "bench"}
    honed(env, "registry", "register", str(mlp(work / "v1.onnx", 0.0)), "mlp")
    honed(env, "registry", "register", str(mlp(work / "v2.onnx", 1e-6)), "mlp")
    honed(env, "registry", "alias", "mlp", "production", "1")
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    import onnxruntime as ort

    expect = work / "expect.npy"
    np.save(expect, ort.InferenceSession(str(work / "v1.onnx")).run(None, {"x": x})[0])

    port = free_port()
    cmd = [sys.executable, "-m", "honed", "serve", "--registry", db, "--model", "mlp@production"]
    cmd += ["--http", f"127.0.0.1:{port}", "--grpc", "off", "--threads", "1"]
    cmd += ["--rollout-poll-s", f"{args.poll_s:g}"]
    os.environ.update(env)
    server = Server("honed", cmd, port, work / "serve.log")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    try:
        server.wait_ready()
        for _ in range(args.rounds):
            for name, mirror in CONFIGS.items():
                if mirror is None:
                    results[name].append(load(server, args, expect))
                    continue
                honed(
                    env, "rollout", "start", "mlp", "--to", "2", "--steps", "25,100", "--mirror", f"{mirror:g}",
                    "--interval", "1h", "--deadline", "3h", "--min-requests", "100000000", "--max-p99-ratio", "off",
                    *(("--min-agreement", "off") if mirror == 0 else ()),
                )  # fmt: skip
                wait_weight(server.url, 25.0, limit_s=60.0 + 2 * args.poll_s)
                results[name].append(load(server, args, expect))
                honed(env, "rollout", "abort", "mlp")
                wait_weight(server.url, None, limit_s=60.0 + 2 * args.poll_s)
    finally:
        server.stop()

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    base = results["no rollout"]
    base_rps, base_p99 = median(base, "rps"), median(base, "p99_ms")
    print(
        f"concurrency {args.concurrency}, {args.duration:g} s x {args.rounds} rounds (medians), "
        f"rollout poll {args.poll_s:g} s, load {load_avg()}\n"
    )
    print(
        "| server | req/s | p99 ms | req/s vs none | p99 vs none | model runs / 1k req | compute µs / req "
        "| server CPU µs / req | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rps, p99 = median(runs, "rps"), median(runs, "p99_ms")
        errors = sum(r["errors"] + r.get("wrong", 0) for r in runs)
        print(
            f"| {name} | {rps:.0f} | {p99:.2f} | {rps / base_rps:.2f} | {p99 / base_p99:.2f} "
            f"| {median(runs, 'runs_per_1k'):.0f} | {median(runs, 'compute_us'):.1f} | {median(runs, 'cpu_us'):.0f} "
            f"| {errors} |"
        )
    print(
        "\nper round (req/s): "
        + "; ".join(f"{n}: " + ", ".join(f"{r['rps']:.0f}" for r in rs) for n, rs in results.items())
    )


def load_avg() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
