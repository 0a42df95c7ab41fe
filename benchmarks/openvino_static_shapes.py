"""What static input shapes are worth on OpenVINO: one model compiled with its symbolic shapes and compiled again
after ``reshape`` to the exact shapes it runs at, timed in interleaved rounds through honed's session factory and
``measure_latency`` (same precision hint, same threads). Prints a Markdown table; writes nothing.

    python benchmarks/openvino_static_shapes.py                      # Magika, its eval files, batch 1 and 32
    python benchmarks/openvino_static_shapes.py --model out/model.xml --data eval.npz --batch 1,32

Magika's model and inputs come from ``benchmarks/models.py`` (the ``bench`` extra); any ONNX or IR file with an
``.npz`` of its inputs works.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from models import default_cache, prepare_magika

from honed.bench import measure_latency
from honed.hardware import detect_hardware
from honed.runtime import RuntimeConfig, create_session


def static_copy(model: Path, feeds: dict[str, np.ndarray], out: Path) -> Path:
    """``model`` reshaped to ``feeds``' shapes, saved as OpenVINO IR."""
    import openvino as ov

    core = ov.Core()
    m = core.read_model(str(model))
    m.reshape({port.get_any_name(): ov.PartialShape(list(feeds[port.get_any_name()].shape)) for port in m.inputs})
    ov.save_model(m, str(out), compress_to_fp16=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX or IR file (default: Magika)")
    parser.add_argument("--data", type=Path, default=None, help=".npz of the model's inputs (default: Magika's)")
    parser.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--precision", default="bf16", choices=("f32", "bf16", "f16"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per configuration per round")
    args = parser.parse_args()
    if (args.model is None) != (args.data is None):
        parser.error("--model and --data go together (neither: Magika)")
    if args.model is None:
        bench = prepare_magika(default_cache())
        args.model, args.data = bench.model, bench.evaluation
    data = np.load(args.data)
    config = RuntimeConfig(
        backend="openvino", options={"INFERENCE_PRECISION_HINT": args.precision, "PERFORMANCE_HINT": "LATENCY"}
    )
    hw = detect_hardware()
    print(f"{args.model.name}, {args.precision}, {hw.cpu_model}, ISA class {hw.isa_class}, {args.rounds} rounds\n")
    print("| batch | dynamic ms | static ms | static speed-up |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="honed-static-") as work:
        for batch in [int(b) for b in args.batch.split(",")]:
            feeds = {name: data[name][:batch] for name in data.files}
            dynamic = create_session(args.model, config)
            missing = [spec.name for spec in dynamic.inputs if spec.name not in feeds]
            if missing:
                parser.error(f"{args.data} holds no {missing}; it holds {sorted(data.files)}")
            feeds = {spec.name: feeds[spec.name] for spec in dynamic.inputs}
            static = create_session(static_copy(args.model, feeds, Path(work) / f"static-{batch}.xml"), config)
            rounds: dict[str, list[float]] = {"dynamic": [], "static": []}
            for _ in range(args.rounds):
                for name, session in (("dynamic", dynamic), ("static", static)):
                    rounds[name].append(measure_latency(session, feeds, warmup=2, duration_s=args.seconds).p50_ms)
            d, s = statistics.median(rounds["dynamic"]), statistics.median(rounds["static"])
            print(f"| {batch} | {d:.2f} | {s:.2f} | {d / s:.2f}x |")


if __name__ == "__main__":
    main()
