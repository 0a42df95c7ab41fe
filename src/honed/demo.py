"""The built-in example: Google's Magika file-type model (shipped in the ``magika`` wheel) on real files.

Inputs are built the way Magika's own feature extraction does: read at most ``block_size`` bytes from each
end of a file, strip leading (resp. trailing) whitespace, keep the first ``beg_size`` and last ``end_size``
bytes and pad with ``padding_token`` to a fixed length. The files are this Python's standard library, so the
demo needs nothing beyond the package registry. :func:`build_magika_datasets` deals calibration and eval sets
out of disjoint files for the optimize step (and the optimize benchmark).
"""

from __future__ import annotations

import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import BackendUnavailable, DataError

MAGIKA_MODEL = "standard_v3_3"
MAGIKA_INPUT = "bytes"
# The optimize step: calibrate on one set of files, judge top-1 agreement on another (>= 100 files, so one
# disagreement moves agreement by at most 1%).
DEMO_CALIBRATION_SAMPLES = 128
DEMO_EVAL_SAMPLES = 256
DEMO_MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class MagikaFeatureConfig:
    beg_size: int = 1024
    end_size: int = 1024
    padding_token: int = 256
    block_size: int = 4096
    min_file_size: int = 8

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> MagikaFeatureConfig:
        config = json.loads((model_dir / "config.min.json").read_text())
        if config.get("mid_size", 0) or config.get("use_inputs_at_offsets", False):
            raise DataError(f"{model_dir}: Magika models with mid or offset features are not supported")
        return cls(
            beg_size=int(config["beg_size"]),
            end_size=int(config["end_size"]),
            padding_token=int(config["padding_token"]),
            block_size=int(config["block_size"]),
            min_file_size=int(config.get("min_file_size_for_dl", 8)),
        )


def magika_model_dir() -> Path:
    """The folder of the Magika model inside the installed ``magika`` package."""
    try:
        import magika
    except ImportError as exc:
        raise BackendUnavailable("the demo needs the magika package: pip install 'honed[demo]'") from exc
    path = Path(magika.__file__).parent / "models" / MAGIKA_MODEL
    if not (path / "model.onnx").is_file():
        raise BackendUnavailable(f"this magika package has no {MAGIKA_MODEL} model; pip install 'magika>=1.0.3'")
    return path


def magika_features(data_head: bytes, data_tail: bytes, config: MagikaFeatureConfig) -> np.ndarray[Any, Any]:
    """One int32 feature row from the first and last ``block_size`` bytes of a file."""
    beg = data_head.lstrip()[: config.beg_size]
    end = data_tail.rstrip()
    end = end[len(end) - config.end_size :] if len(end) > config.end_size else end
    row = np.full(config.beg_size + config.end_size, config.padding_token, dtype=np.int32)
    row[: len(beg)] = np.frombuffer(beg, dtype=np.uint8)
    row[config.beg_size + config.end_size - len(end) :] = np.frombuffer(end, dtype=np.uint8)
    return row


def file_features(path: Path, config: MagikaFeatureConfig) -> np.ndarray[Any, Any] | None:
    """Features of one file, or None when it is too small for the model (Magika answers those without it)."""
    size = path.stat().st_size
    if size < config.min_file_size:
        return None
    n = min(config.block_size, size)
    with open(path, "rb") as fh:
        head = fh.read(n)
        fh.seek(size - n)
        tail = fh.read(n)
    return magika_features(head, tail, config)


def stdlib_files(limit: int) -> list[Path]:
    """Up to ``limit`` files of this Python's standard library, spread evenly over it (so of many kinds:
    source, bytecode, text, data, archives, audio test files), in a stable order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*") if "site-packages" not in p.parts and p.is_file() and not p.is_symlink())
    if len(files) <= limit:
        return files
    step = len(files) / limit
    return [files[int(i * step)] for i in range(limit)]


def _feature_rows(files: list[Path], samples: int, config: MagikaFeatureConfig) -> list[np.ndarray[Any, Any]]:
    """Up to ``samples`` feature rows, one per file, skipping files too small for the model and repeated rows."""
    rows: list[np.ndarray[Any, Any]] = []
    seen: set[bytes] = set()
    for path in files:
        try:
            row = file_features(path, config)
        except OSError:
            continue
        if row is not None and row.tobytes() not in seen:
            seen.add(row.tobytes())
            rows.append(row)
        if len(rows) >= samples:
            break
    if not rows:
        raise DataError("found no files to build Magika inputs from")
    return rows


def _save(out: Path, rows: list[np.ndarray[Any, Any]]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {MAGIKA_INPUT: np.stack(rows)}
    np.savez(out, **arrays)
    return out


def build_magika_dataset(out: Path, *, samples: int, config: MagikaFeatureConfig) -> Path:
    """Write ``samples`` feature rows from real files to ``out`` (.npz with the model's input name)."""
    return _save(out, _feature_rows(stdlib_files(samples * 4), samples, config))


def build_magika_datasets(
    folder: Path, *, calibration: int, evaluation: int, config: MagikaFeatureConfig
) -> tuple[Path, Path]:
    """Calibration and eval .npz files (``calibration-N.npz``, ``eval-N.npz`` in ``folder``) from disjoint files.

    The files are spread over the whole standard library and dealt out so both sets cover the same kinds of
    file; a file (or a file with the same features) never lands in both, so a model cannot be judged on
    the inputs it was calibrated with.
    """
    total = calibration + evaluation
    rows = _feature_rows(stdlib_files(total * 4), total, config)
    if len(rows) < total:
        raise DataError(f"found only {len(rows)} usable files; {total} are needed for {calibration} + {evaluation}")
    calib_index = {int(i * total / calibration) for i in range(calibration)}
    calib = [r for i, r in enumerate(rows) if i in calib_index]
    evals = [r for i, r in enumerate(rows) if i not in calib_index]
    return (
        _save(folder / f"calibration-{calibration}.npz", calib),
        _save(folder / f"eval-{evaluation}.npz", evals),
    )
