"""A Hugging Face folder (a tiny BERT saved from a random config): exported with dynamic batch and sequence
axes, verified against transformers; a folder without weights is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import honed
from honed.errors import InvalidArgument, InvalidModel

torch = pytest.importorskip("torch", reason="the Hugging Face importer needs torch (pip install 'honed[import]')")
transformers = pytest.importorskip("transformers", reason="the Hugging Face importer needs transformers")


def test_a_local_bert_is_exported_and_verified(tiny_bert: Path, tmp_path: Path) -> None:
    result = honed.from_hf(tiny_bert, out=tmp_path / "out")
    record = result.record
    assert record.framework == "transformers" and record.task == "feature-extraction"
    assert [s.name for s in record.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(s.shape == ("batch", "sequence") for s in record.inputs)
    assert [s.name for s in record.outputs] == ["last_hidden_state"]
    assert record.verification.ok and record.verification.outputs[0].max_abs_error < 1e-5
    # another batch and sequence length than the export's, padded, against transformers itself
    rng = np.random.default_rng(5)
    feeds: dict[str, Any] = {
        "input_ids": rng.integers(0, 64, (3, 5), dtype=np.int64),
        "attention_mask": np.array([[1] * 5, [1, 1, 1, 0, 0], [1] * 5], dtype=np.int64),
        "token_type_ids": np.zeros((3, 5), dtype=np.int64),
    }
    session = ort.InferenceSession(str(result.model_path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)[0]
    model = transformers.AutoModel.from_pretrained(str(tiny_bert), local_files_only=True).eval()
    with torch.no_grad():
        want = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    assert np.abs(got - want).max() < 1e-4


def test_a_folder_without_weights_or_config_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidModel, match=r"no config\.json"):
        honed.from_hf(empty, out=tmp_path / "out")
    (empty / "config.json").write_text((tiny_bert / "config.json").read_text())
    with pytest.raises(InvalidModel, match="holds no weights"):
        honed.from_hf(empty, out=tmp_path / "out")
    (empty / "model.safetensors").write_bytes((tiny_bert / "model.safetensors").read_bytes())
    with pytest.raises(InvalidModel, match="holds no tokenizer"):
        honed.from_hf(empty, out=tmp_path / "out")
    with pytest.raises(InvalidArgument, match="unknown --task"):
        honed.from_hf(tiny_bert, out=tmp_path / "out", task="translation")
    assert not (tmp_path / "out").exists()
