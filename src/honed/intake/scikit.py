"""scikit-learn in: a fitted estimator or pipeline, converted with skl2onnx and verified against the estimator.

The graph takes one float input ``X`` of shape ``[batch, n_features]``. Classifiers give ``label`` and
``probabilities`` (a plain tensor, not skl2onnx's list of maps), checked against ``predict`` and
``predict_proba`` (``decision_function`` for a classifier without it, such as LinearSVC); clusterers give
``label`` and ``scores`` (``transform``'s distances); regressors are checked against ``predict``, transformers
against ``transform``.

A pickled or joblib file runs code from the file as it loads, so it is only loaded when the caller says it
trusts the file (``--trust-pickle``).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
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
    model = _convert(skl2onnx, estimator, width, opset)
    names = [o.name for o in model.graph.output]

    def reference(feeds: Mapping[str, Array]) -> list[Array]:
        # the estimator sees the float32 values the ONNX graph sees, so only the arithmetic differs
        return _reference(estimator, np.asarray(feeds[INPUT], dtype=np.float64), names)

    converted = Converted(
        model=model,
        framework="sklearn",
        framework_version=str(sklearn.__version__),
        source=source or describe(estimator),
        converter="skl2onnx",
        converter_version=str(skl2onnx.__version__),
    )
    feeds = {INPUT: features}
    tol = tolerance or Tolerance()
    return finish(converted, feeds, reference(feeds), tol, inputs=sample_label, out=out, reference=reference)


def _convert(skl2onnx: Any, estimator: Any, width: int, opset: int | None) -> Any:
    """skl2onnx's graph with one float input ``X``; classifiers give probabilities as a tensor where they can."""
    from skl2onnx.common.data_types import FloatTensorType

    steps = [step for step in _steps(estimator) if _is_classifier(step)]
    options = {id(step): {"zipmap": False} for step in steps}
    while True:
        try:
            with quiet_converters():
                return skl2onnx.convert_sklearn(
                    estimator,
                    initial_types=[(INPUT, FloatTensorType([None, width]))],
                    target_opset=opset,
                    options=options or None,
                )
        except Exception as exc:  # skl2onnx raises plain errors for estimators it has no converter for
            # "Option 'zipmap' not in [...] for class 'LinearSVC'": such a classifier gives tensors anyway
            refused = [id(s) for s in steps if id(s) in options and f"'{type(s).__name__}'" in str(exc)]
            if not (isinstance(exc, NameError) and "'zipmap'" in str(exc) and refused):
                raise InvalidModel(f"skl2onnx cannot convert {describe(estimator)}: {first_line(exc)}") from exc
            for key in refused:
                del options[key]


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


def _reference(estimator: Any, X: Array, outputs: Sequence[str]) -> list[Array]:
    """The estimator's own answers to each of the graph's outputs, by the names skl2onnx gives them."""
    return [np.asarray(_answer(estimator, X, name)) for name in outputs]


def _answer(estimator: Any, X: Array, output: str) -> Any:
    if output == "label":
        return estimator.predict(X)
    if output == "probabilities":  # a classifier without predict_proba (LinearSVC) exports its decision scores
        return estimator.predict_proba(X) if hasattr(estimator, "predict_proba") else estimator.decision_function(X)
    if output == "scores":  # a clusterer's distances to its centres
        return estimator.transform(X) if hasattr(estimator, "transform") else estimator.decision_function(X)
    if hasattr(estimator, "predict"):
        return estimator.predict(X)
    if hasattr(estimator, "transform"):
        return estimator.transform(X)
    raise InvalidArgument(f"{describe(estimator)} has neither predict nor transform; nothing to check the export by")
