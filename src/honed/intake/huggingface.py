"""Hugging Face in: a model folder on disk (``save_pretrained``), never the hub, exported through transformers'
PyTorch model with ``torch.onnx`` and verified against that model.

The graph's inputs are the text inputs the model's ``forward`` takes (``input_ids``, ``attention_mask`` and, where
the model has it, ``token_type_ids``), with dynamic ``batch`` and ``sequence`` axes. The task picks the head:
``feature-extraction`` exports ``last_hidden_state``, ``text-classification`` the ``logits``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import InvalidArgument, InvalidModel, ModelNotFound
from honed.intake._quiet import first_line, quiet_converters
from honed.intake.output import ImportResult, check_out_dir
from honed.intake.pytorch import _import_module, require_torch
from honed.intake.samples import check_array, read_sample
from honed.intake.verify import Array, Tolerance

TASKS = {
    "feature-extraction": ("AutoModel", "last_hidden_state"),
    "text-classification": ("AutoModelForSequenceClassification", "logits"),
}
"""task -> (the transformers auto class that loads its head, the output exported)."""

_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model")
"""What ``save_pretrained`` of a tokenizer leaves: a folder without any of these cannot turn text into the inputs."""


def from_hf(
    folder: str | Path,
    *,
    out: str | Path,
    task: str = "feature-extraction",
    sample: str | Path | None = None,
    opset: int | None = None,
    tolerance: Tolerance | None = None,
    batch: int = 2,
    sequence: int = 16,
) -> ImportResult:
    """Export the model saved in ``folder`` for ``task`` to ONNX in ``out`` (``model.onnx`` + ``import.json``).

    It is verified on ``sample`` (an ``.npz`` of integer arrays named as the model's inputs) or on ``batch``
    generated token sequences of length ``sequence`` (the second one padded). A mismatch raises
    :class:`honed.errors.ExportMismatch` and writes nothing.
    """
    if task not in TASKS:
        raise InvalidArgument(f"unknown --task {task!r}; choose one of: {', '.join(TASKS)}")
    if batch < 1 or sequence < 2:
        raise InvalidArgument(f"batch must be >= 1 and sequence >= 2, got {batch} and {sequence}")
    check_out_dir(out)
    path = check_folder(folder)
    torch = require_torch()
    try:
        import transformers
    except ImportError as exc:
        raise InvalidArgument("importing a Hugging Face model needs transformers: pip install 'honed[import]'") from exc
    auto_name, field = TASKS[task]
    with quiet_converters():
        try:
            model = getattr(transformers, auto_name).from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises ValueError/OSError/KeyError for folders it cannot use
            raise InvalidModel(f"transformers cannot load {path} for {task}: {first_line(exc)}") from exc
    model.eval()
    names = [n for n in _TEXT_INPUTS if n in inspect.signature(model.forward).parameters]
    if "input_ids" not in names:
        raise InvalidModel(f"{path} holds a {type(model).__name__}, which takes no input_ids: not a text model")
    if sample is not None:
        feeds = read_sample(sample, names)
        for name, array in feeds.items():
            check_array(name, array, kind="int", ndim=2)
        if len({a.shape for a in feeds.values()}) > 1:
            shapes = ", ".join(f"{n} {a.shape}" for n, a in feeds.items())
            raise InvalidArgument(f"the sample's arrays must all have one shape [batch, sequence]; got {shapes}")
        feeds = {n: a.astype(np.int64) for n, a in feeds.items()}
        vocab = int(getattr(model.config, "vocab_size", 0) or 0)
        ids = feeds["input_ids"]
        if vocab and (ids.min() < 0 or ids.max() >= vocab):
            raise InvalidArgument(f"the sample's input_ids must lie in [0, {vocab}) (the model's vocabulary)")
        label = f"sample {Path(sample).name}"
    else:
        feeds = _generated(names, int(model.config.vocab_size), batch, sequence)
        label = "generated inputs"
    wrapper = _head(model, field, names)
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    return _import_module(
        wrapper,
        args,
        out=out,
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
        sample=feeds,
        opset=opset,
        tolerance=tolerance,
        source=str(path),
        sample_label=label,
        output_names=[field],
        framework=("transformers", str(transformers.__version__)),
        task=task,
    )


def check_folder(folder: str | Path) -> Path:
    """A Hugging Face model folder with its config, weights and tokenizer, or a clear error naming what is missing."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ModelNotFound(f"model folder not found: {path}")
    if not path.is_dir():
        raise InvalidArgument(f"{path} is a file; give the folder a Hugging Face model was saved to (save_pretrained)")
    if not (path / "config.json").is_file():
        raise InvalidModel(f"{path} has no config.json: it is not a Hugging Face model folder (save_pretrained)")
    if not any((path / w).is_file() for w in _WEIGHTS):
        raise InvalidModel(f"{path} holds no weights (looked for {', '.join(_WEIGHTS)}); save the model with them")
    if not any((path / t).is_file() for t in _TOKENIZER):
        raise InvalidModel(
            f"{path} holds no tokenizer (looked for {', '.join(_TOKENIZER)}): the model cannot be served on text "
            "without it; save it beside the model with tokenizer.save_pretrained"
        )
    return path


def _generated(names: list[str], vocab: int, batch: int, sequence: int) -> dict[str, Array]:
    """Random token ids; every second sequence padded over its last half, so the mask is exercised."""
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, max(vocab, 1), (batch, sequence), dtype=np.int64)}
    mask = np.ones((batch, sequence), dtype=np.int64)
    mask[1::2, sequence // 2 :] = 0
    extra = {"attention_mask": mask, "token_type_ids": np.zeros((batch, sequence), dtype=np.int64)}
    feeds.update({n: extra[n] for n in names if n in extra})
    return {n: feeds[n] for n in names}


def _head_class() -> Any:
    module: Any = require_torch().nn.Module

    class Head(module):
        """The model with tensors in and one tensor out, as the exporter wants it."""

        def __init__(self, model: Any, field: str, names: list[str]) -> None:
            super().__init__()
            self.model, self.field, self.names = model, field, names

        def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Any:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return getattr(self.model(**{n: given[n] for n in self.names}), self.field)

    return Head


def _head(model: Any, field: str, names: list[str]) -> Any:
    return _head_class()(model, field, names).eval()
