"""``python -m honed_edge COMMAND``: selftest, predict, serve, info, bench.

Exit codes: 0 done; 1 the bundle failed its check (a file changed, outputs off the reference, the model would not
load); 2 bad input (arguments, files, tensors that do not fit). Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import MANIFEST, Bundle, BundleError, InputError, file_sha256, open_bundle
from .tensors import decode_v2, encode_v2, read_npz, write_npz

HERE = Path(__file__).resolve().parent.parent


def _warn_versions(bundle: Bundle) -> None:
    for name, pinned in bundle.runtime.items():
        try:
            have = np.__version__ if name == "numpy" else importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # the import that follows names what is missing
        if have != pinned:
            print(f"warning: {name} {have} is installed; the bundle was checked with {pinned}", file=sys.stderr)


def _load(bundle: Bundle) -> Any:
    from .session import Model

    _warn_versions(bundle)
    try:
        return Model(bundle)
    except ImportError as exc:
        raise BundleError(f"{exc}: install the bundle's requirements.txt") from exc
    except BundleError:
        raise
    except Exception as exc:  # the runtimes' load errors have no common base class
        raise BundleError(f"{bundle.model_file} does not load: {str(exc).splitlines()[0]}") from exc


def compare(
    outputs: dict[str, np.ndarray[Any, Any]], reference: dict[str, np.ndarray[Any, Any]], bundle: Bundle
) -> float:
    """The largest absolute difference from the reference; raises BundleError when one is out of tolerance."""
    worst = 0.0
    for name, want in reference.items():
        if name not in outputs:
            raise BundleError(f"the model gives no output {name!r} that the reference has")
        got = np.asarray(outputs[name])
        if got.shape != want.shape or got.dtype != want.dtype:
            raise BundleError(
                f"output {name!r} is {got.dtype}{list(got.shape)}, the reference {want.dtype}{list(want.shape)}"
            )
        if np.issubdtype(want.dtype, np.floating):
            if not np.allclose(got, want, rtol=bundle.rtol, atol=bundle.atol, equal_nan=True):
                diff = float(np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                raise BundleError(
                    f"output {name!r} differs from the reference by up to {diff:.3g} "
                    f"(tolerance rtol={bundle.rtol:g}, atol={bundle.atol:g})"
                )
            if want.size:
                worst = max(worst, float(np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
        elif not np.array_equal(got, want):
            raise BundleError(f"output {name!r} differs from the reference")
    return worst


def selftest(args: argparse.Namespace) -> int:
    manifest_sha = file_sha256(Path(args.bundle) / MANIFEST)
    if args.expect is not None and (len(args.expect) < 12 or not manifest_sha.startswith(args.expect.lower())):
        raise BundleError(f"{MANIFEST} has sha256 {manifest_sha[:12]}, not the expected {args.expect[:12]}")
    bundle = open_bundle(args.bundle)
    model = _load(bundle)
    reference = read_npz(bundle.root / bundle.reference_file)
    try:
        outputs = model.run(read_npz(bundle.root / bundle.sample_file))
    except InputError as exc:
        raise BundleError(f"the recorded sample does not fit the model: {exc}") from exc
    worst = compare(outputs, reference, bundle)
    print(
        f"selftest ok: bundle {manifest_sha[:12]}, {len(bundle.files)} files match their sha256, "
        f"{bundle.model_file} loaded in {model.load_s * 1000:.1f} ms on {model.engine.describe()}, "
        f"{len(reference)} output(s) match the reference (max abs diff {worst:.3g})"
    )
    return 0


def predict(args: argparse.Namespace) -> int:
    model = _load(open_bundle(args.bundle))
    if args.input is None:
        try:
            body = json.load(sys.stdin)
        except ValueError as exc:
            raise InputError(f"stdin is not JSON: {exc}") from None
        result = {"model_name": model.bundle.name, "outputs": encode_v2(model.run(decode_v2(body)))[0]}
        if args.output is None:
            json.dump(result, sys.stdout)
            sys.stdout.write("\n")
        else:
            Path(args.output).write_text(json.dumps(result) + "\n", encoding="utf-8")
        return 0
    outputs = model.run(read_npz(Path(args.input)))
    if args.output is None:
        json.dump({"model_name": model.bundle.name, "outputs": encode_v2(outputs)[0]}, sys.stdout)
        sys.stdout.write("\n")
    else:
        write_npz(args.output, outputs)
    return 0


def serve(args: argparse.Namespace) -> int:
    from .server import serve as run_server

    if args.workers < 1 or args.backlog < 0:
        raise InputError("--workers must be >= 1 and --backlog >= 0")
    run_server(_load(open_bundle(args.bundle)), args.host, args.port, workers=args.workers, backlog=args.backlog)
    return 0


def info(args: argparse.Namespace) -> int:
    data = json.loads((Path(args.bundle) / "manifest.json").read_text(encoding="utf-8"))
    open_bundle(args.bundle)
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Latency of the recorded sample, after ``--warmup`` runs: one JSON line with p50/p90 in milliseconds."""
    if args.count < 1 or args.warmup < 0:
        raise InputError("--count must be >= 1 and --warmup >= 0")
    bundle = open_bundle(args.bundle)
    model = _load(bundle)
    feeds = model.check(read_npz(bundle.root / bundle.sample_file))
    for _ in range(args.warmup):
        model.engine.run(feeds)
    times = []
    for _ in range(args.count):
        started = time.perf_counter()
        model.engine.run(feeds)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    summary = {"count": args.count, "load_ms": model.load_s * 1000, "p50_ms": statistics.median(times), "p90_ms": p90}
    print(json.dumps(summary))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m honed_edge", description="Run an edge bundle exported by honed.")
    top.add_argument("--bundle", default=str(HERE), help="The bundle folder (default: the one holding honed_edge).")
    commands = top.add_subparsers(dest="command", required=True)
    t = commands.add_parser(
        "selftest", help="Check every sha256, load the model, compare the sample with its reference."
    )
    t.add_argument(
        "--expect", help="The manifest's sha256 (12+ hex digits) as honed export printed it: refuse any other manifest."
    )
    p = commands.add_parser("predict", help="Inputs from .npz (or V2 JSON on stdin) to outputs (.npz or JSON).")
    p.add_argument("--input", help="An .npz with one array per model input; without it, V2 JSON on stdin.")
    p.add_argument("--output", help="Where to write the outputs (.npz for an .npz input); default JSON on stdout.")
    s = commands.add_parser("serve", help="The KServe V2 REST subset on HOST:PORT.")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed on the first line).")
    s.add_argument("--workers", type=int, default=4, help="Threads serving connections (default 4).")
    s.add_argument(
        "--backlog", type=int, default=16, help="Connections that may wait for a worker; beyond it 503 (default 16)."
    )
    commands.add_parser("info", help="Print the manifest (after checking every sha256).")
    b = commands.add_parser("bench", help="p50/p90 latency of the recorded sample, as one JSON line.")
    b.add_argument("--count", type=int, default=100)
    b.add_argument("--warmup", type=int, default=10)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handlers = {"selftest": selftest, "predict": predict, "serve": serve, "info": info, "bench": bench}
    try:
        return handlers[args.command](args)
    except BundleError as exc:
        print(f"{args.command} failed: {exc}", file=sys.stderr)
        return 1
    except InputError as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the model's own run failure (RunError), reported in one line like every other
        print(f"{args.command} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
