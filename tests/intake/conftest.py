"""Small real models for the importers: a torch CNN, a tiny BERT saved from a random config, fitted estimators."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def tiny_cnn() -> Any:
    """Conv -> ReLU -> global mean -> Linear, 3x8x8 images to 2 scores, fixed weights."""
    torch = pytest.importorskip("torch", reason="the PyTorch importer needs torch (pip install 'honed[import]')")

    class TinyCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Linear(4, 2)

        # left unannotated: TorchScript reads a bare argument as a Tensor
        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture(scope="session")
def cnn_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CNN saved as a torch.export program (.pt2) and as a TorchScript archive (.pt)."""
    torch = pytest.importorskip("torch", reason="the PyTorch importer needs torch (pip install 'honed[import]')")
    folder = tmp_path_factory.mktemp("cnn")
    module = tiny_cnn()
    with warnings.catch_warnings():  # torch warns that TorchScript is deprecated: users still have such files
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (torch.randn(2, 3, 8, 8),))
        torch.export.save(program, str(folder / "cnn.pt2"))
        torch.jit.save(torch.jit.script(module), str(folder / "cnn.pt"))
    return {"pt2": folder / "cnn.pt2", "pt": folder / "cnn.pt"}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer BERT with random weights and a word-piece tokenizer, saved with save_pretrained."""
    torch = pytest.importorskip("torch", reason="the Hugging Face importer needs torch (pip install 'honed[import]')")
    transformers = pytest.importorskip("transformers", reason="the Hugging Face importer needs transformers")
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bert")
    transformers.logging.disable_progress_bar()
    transformers.BertModel(config).save_pretrained(str(folder))
    vocab = folder / "words.txt"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(59))]
    vocab.write_text("\n".join(words) + "\n")
    transformers.BertTokenizer(vocab_file=str(vocab)).save_pretrained(str(folder))
    vocab.unlink()
    return folder


@pytest.fixture(scope="session")
def features() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """64 rows of 5 features and a binary label that depends on two of them."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def fitted(kind: str, X: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> Any:
    """A fitted ``logistic`` regression, ``ridge`` regression, ``pca``, ``linear-svc``, ``kmeans``, or scaler +
    logistic ``pipeline``."""
    pytest.importorskip("sklearn", reason="the scikit-learn importer needs scikit-learn (pip install 'honed[import]')")
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        return LogisticRegression().fit(X, y)
    if kind == "ridge":
        return Ridge().fit(X, X[:, 0] * 2 - X[:, 3])
    if kind == "pca":
        return PCA(3).fit(X)
    if kind == "linear-svc":  # three classes, no predict_proba: the graph's probabilities are decision scores
        from sklearn.svm import LinearSVC

        return LinearSVC().fit(X, y + (X[:, 2] > 0.5))
    if kind == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(3, n_init=2, random_state=0).fit(X)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
