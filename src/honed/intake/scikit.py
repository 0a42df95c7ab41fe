"""scikit-learn in: a fitted estimator or pipeline, converted with skl2onnx and verified against the estimator.

The graph takes one float input ``X`` of shape ``[batch, n_features]``. Classifiers give ``label`` and
``probabilities`` (a plain tensor, not skl2onnx's list of maps), checked against ``predict`` and
``predict_proba``; regressors are checked against ``predict``, transformers against ``transform``.

A pickled or joblib file runs code from the file as it loads, so it is only loaded when the caller says it
trusts the file (``--trust-pickle``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import InvalidArgument, InvalidModel, ModelNotFound
from honed.intake._quiet import first_line, quiet_converters
from honed.intake.output import Converted, ImportResult, check_out_dir, describe, finish
from honed.intake.samples import check_array, read_sample
from honed.intake.verify import Array, Tolerance

INPUT = "X"
_PICKLES = (".pkl", ".pickle", ".joblib")


def from_sklearn(
    estimator: Any,
    X: Any = None,
    *,
    out: str | Path,
    opset: int | None = None,
    tolerance: Tolerance | None = None,
    source: str | None = None,
    sample_label: str = "the sample",
) -> ImportResult:
    """Convert a fitted ``estimator`` to ONNX in ``out`` (``model.onnx`` + ``import.json``), verified on ``X``
    (rows of features) or, without ``X``, on 16 generated rows. A mismatch raises
    :class:`honed.errors.ExportMismatch` and writes nothing."""
    sklearn, skl2onnx = _require()
    check_out_dir(out)
    width = _n_features(estimator)
    if X is None:
        X = np.random.default_rng(0).standard_normal((16, width))
        sample_label = "generated inputs"
    X = np.asarray(X)
    check_array(INPUT, X, kind="float", ndim=2, width=width)
    features = X.astype(np.float32)
    # the estimator sees the float32 values the ONNX graph sees, so only the arithmetic differs
    expected = _reference(estimator, features.astype(np.float64))
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(step): {"zipmap": False} for step in _steps(estimator) if _is_classifier(step)}
    try:
        with quiet_converters():
            model = skl2onnx.convert_sklearn(
                estimator,
                initial_types=[(INPUT, FloatTensorType([None, width]))],
                target_opset=opset,
                options=options or None,
            )
    except Exception as exc:  # skl2onnx raises plain errors for estimators it has no converter for
        raise InvalidModel(f"skl2onnx cannot convert {describe(estimator)}: {first_line(exc)}") from exc
    converted = Converted(
        model=model,
        framework="sklearn",
        framework_version=str(sklearn.__version__),
        source=source or describe(estimator),
        converter="skl2onnx",
        converter_version=str(skl2onnx.__version__),
    )
    return finish(
        converted,
        {INPUT: features},
        expected,
        tolerance or Tolerance(),
        inputs=sample_label,
        out=out,
        reference=lambda other: _reference(estimator, np.asarray(other[INPUT], dtype=np.float64)),
    )


def import_sklearn_file(
    path: str | Path,
    *,
    out: str | Path,
    trust_pickle: bool = False,
    sample: str | Path | None = None,
    opset: int | None = None,
    tolerance: Tolerance | None = None,
) -> ImportResult:
    """Import a pickled or joblib estimator file (only with ``trust_pickle``); see :func:`from_sklearn`."""
    check_out_dir(out)
    estimator = load_sklearn_file(path, trust_pickle=trust_pickle)
    X = read_sample(sample, [INPUT])[INPUT] if sample is not None else None
    label = f"sample {Path(sample).name}" if sample is not None else "generated inputs"
    return from_sklearn(
        estimator, X, out=out, opset=opset, tolerance=tolerance, source=str(Path(path).expanduser()), sample_label=label
    )


def load_sklearn_file(path: str | Path, *, trust_pickle: bool) -> Any:
    """Unpickle an estimator from ``path``, refused unless ``trust_pickle``: unpickling runs the file's code."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFound(f"model file not found: {p}")
    if not p.is_file():
        raise InvalidArgument(f"{p} is a folder; give the .joblib or .pkl file of a fitted estimator")
    if p.suffix.lower() not in _PICKLES:
        raise InvalidArgument(f"{p}: expected a .joblib, .pkl or .pickle file of a fitted scikit-learn estimator")
    if not trust_pickle:
        raise InvalidArgument(
            f"{p} is a pickle, and loading a pickle runs whatever code it holds; "
            "pass --trust-pickle (trust_pickle=True) only if you trust where the file came from"
        )
    try:
        if p.suffix.lower() == ".joblib":
            import joblib

            estimator = joblib.load(p)
        else:
            with p.open("rb") as handle:
                estimator = pickle.load(handle)  # the caller said it trusts this file
    except Exception as exc:  # a corrupt pickle raises almost anything
        raise InvalidModel(f"cannot unpickle {p}: {first_line(exc)}") from exc
    sklearn, _ = _require()
    if not isinstance(estimator, sklearn.base.BaseEstimator):
        raise InvalidModel(f"{p} holds {describe(estimator)}, not a scikit-learn estimator")
    return estimator


def _require() -> tuple[Any, Any]:
    try:
        import skl2onnx
        import sklearn
        import sklearn.base
    except ImportError as exc:
        raise InvalidArgument("importing a scikit-learn model needs skl2onnx: pip install 'honed[import]'") from exc
    return sklearn, skl2onnx


def _n_features(estimator: Any) -> int:
    width = getattr(estimator, "n_features_in_", None)
    if width is None:
        raise InvalidArgument(f"{describe(estimator)} is not fitted (it has no n_features_in_); fit it first")
    return int(width)


def _steps(estimator: Any) -> list[Any]:
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return [estimator]
    return [s for _, step in steps for s in _steps(step)]


def _is_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(estimator))


def _reference(estimator: Any, X: Array) -> list[Array]:
    """The estimator's own answers, in the order skl2onnx lays out the graph's outputs."""
    if _is_classifier(estimator) and hasattr(estimator, "predict_proba"):
        return [np.asarray(estimator.predict(X)), np.asarray(estimator.predict_proba(X))]
    if hasattr(estimator, "predict"):
        return [np.asarray(estimator.predict(X))]
    if hasattr(estimator, "transform"):
        return [np.asarray(estimator.transform(X))]
    raise InvalidArgument(f"{describe(estimator)} has neither predict nor transform; nothing to check the export by")
