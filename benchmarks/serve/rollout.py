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


def load(url: str, args: argparse.Namespace, expect: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--model", "mlp", "--input", "x=1x16"]
    cmd += ["--encoding", "json"]
    cmd += ["--concurrency", str(args.concurrency), "--duration", str(args.duration), "--warmup", "1"]
    cmd += ["--expect", str(expect)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
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
    os.environ.update(env)
    server = Server("honed", cmd, port, work / "serve.log")
    results: dict[str, list[dict[str, Any]]] = {"no rollout": [], "rollout 25%, mirror 10%": []}
    try:
        server.wait_ready()
        for _ in range(args.rounds):
            results["no rollout"].append(load(server.url, args, expect))
            honed(
                env, "rollout", "start", "mlp", "--to", "2", "--steps", "25,100", "--mirror", "0.1",
                "--interval", "1h", "--deadline", "3h", "--min-requests", "100000000", "--max-p99-ratio", "off",
            )  # fmt: skip
            wait_weight(server.url, 25.0)
            results["rollout 25%, mirror 10%"].append(load(server.url, args, expect))
            honed(env, "rollout", "abort", "mlp")
            wait_weight(server.url, None)
    finally:
        server.stop()
    base_rps = statistics.median(r["rps"] for r in results["no rollout"])
    base_p99 = statistics.median(r["p99_ms"] for r in results["no rollout"])
    print(f"concurrency {args.concurrency}, {args.duration:g} s x {args.rounds} rounds (medians)\n")
    print("| server | req/s | p99 ms | req/s vs none | p99 vs none | errors |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        errors = sum(r["errors"] for r in runs)
        print(f"| {name} | {rps:.0f} | {p99:.2f} | {rps / base_rps:.2f} | {p99 / base_p99:.2f} | {errors} |")


if __name__ == "__main__":
    main()
