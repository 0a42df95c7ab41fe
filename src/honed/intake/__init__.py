"""Models in from where users keep them: PyTorch, Hugging Face folders and scikit-learn, each converted to ONNX
by the converter made for it and verified against its source before anything is written.

    import honed
    result = honed.from_torch(module, torch.randn(1, 3, 224, 224), out="imported/")
    result = honed.from_sklearn(pipeline, X, out="imported/")
    result = honed.from_hf("./my-bert/", out="imported/", task="feature-extraction")

Each writes ``model.onnx`` and ``import.json`` (:class:`ImportRecord`) into ``out`` and returns an
:class:`ImportResult`; an export whose outputs differ from the source's beyond the :class:`Tolerance` raises
:class:`honed.errors.ExportMismatch` and writes nothing. Torch, transformers and skl2onnx are imported only when
an importer runs.
"""

from __future__ import annotations

from honed.intake.huggingface import from_hf
from honed.intake.output import ImportResult
from honed.intake.pytorch import from_torch, import_torch_file
from honed.intake.record import ImportRecord
from honed.intake.scikit import from_sklearn, import_sklearn_file
from honed.intake.verify import OutputError, Tolerance, Verification

__all__ = [
    "ImportRecord",
    "ImportResult",
    "OutputError",
    "Tolerance",
    "Verification",
    "from_hf",
    "from_sklearn",
    "from_torch",
    "import_sklearn_file",
    "import_torch_file",
]
