"""MLflow both ways: an MLflow ONNX model as honed's input, and an optimize winner as a new MLflow model version.

    models:/NAME/VERSION   models:/NAME@ALIAS   runs:/RUN_ID/PATH

:func:`fetch` resolves such a URI on the tracking server (``--mlflow-uri``, else ``MLFLOW_TRACKING_URI``), refuses
a model of another flavour than ``onnx``, downloads its artifacts once into the cache (by server, name and version,
or run and path; an alias is resolved to its version first, so moving it fetches the new one) and returns where
they lie. :func:`log_winner` writes an optimize output folder back as a new version of a registered model, with
the runtime options honed chose in the flavour so MLflow's own pyfunc runs it the same way. The ``mlflow`` package
(the ``mlflow`` extra) is imported only here, and only when one of them runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import HonedError, InvalidArgument, InvalidModel, ModelNotFound, Unavailable
from honed.fields import as_dict
from honed.intake._quiet import first_line, quiet_converters
from honed.model.loader import is_mlflow_uri

__all__ = [
    "LoggedVersion",
    "MlflowModel",
    "fetch",
    "is_mlflow_uri",
    "log_winner",
    "mlflow_backends",
    "runtime_options",
    "tag_version",
]

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
FLAVOUR = "onnx"
MLMODEL_FILE = "MLmodel"
_HEALTH_TIMEOUT_S = 5.0
_tracking_uri: str | None = None

# recipe.json's runtime -> onnxruntime.SessionOptions' GraphOptimizationLevel values (what the flavour stores)
_GRAPH_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


@dataclass(frozen=True)
class MlflowModel:
    """An MLflow ONNX model fetched into the local cache."""

    uri: str
    """The URI as given (``models:/scorer@prod``)."""
    resolved_uri: str
    """The same model by version or run (``models:/scorer/3``): what an alias pointed at when it was fetched."""
    tracking_uri: str
    name: str
    version: str | None
    run_id: str | None
    folder: Path
    """The MLflow model folder (``MLmodel`` and the ONNX file)."""
    model_file: Path

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class LoggedVersion:
    """The MLflow model version :func:`log_winner` created."""

    name: str
    version: str
    run_id: str
    tracking_uri: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "uri": self.uri}


def set_tracking_uri(uri: str | None) -> None:
    """The tracking server URIs are resolved on in this process (``--mlflow-uri``); None falls back to the env."""
    global _tracking_uri
    _tracking_uri = uri


def tracking_uri(explicit: str | None = None) -> str:
    """``explicit``, else :func:`set_tracking_uri`'s, else ``$MLFLOW_TRACKING_URI``; none at all is refused
    rather than letting MLflow fall back to a ``./mlruns`` folder in the working directory."""
    uri = explicit or _tracking_uri or os.environ.get(ENV_TRACKING_URI)
    if not uri:
        raise InvalidArgument(f"an MLflow URI needs a tracking server: pass --mlflow-uri URL or set {ENV_TRACKING_URI}")
    return uri


def check_server(uri: str) -> None:
    """Refuse an HTTP tracking server that does not answer its health check, in seconds rather than after
    MLflow's retries."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=_HEALTH_TIMEOUT_S) as reply:
            if reply.status == 200:
                return
            raise Unavailable(f"MLflow tracking server {uri} answered its health check with HTTP {reply.status}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"cannot reach the MLflow tracking server at {uri}: {reason}") from None


def default_cache_dir() -> Path:
    """``$HONED_CACHE_DIR/mlflow``, else ``$XDG_CACHE_HOME/honed/mlflow``, else ``~/.cache/honed/mlflow``."""
    if os.environ.get("HONED_CACHE_DIR"):
        return Path(os.environ["HONED_CACHE_DIR"]) / "mlflow"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "honed" / "mlflow"


def _mlflow() -> Any:
    try:
        with quiet_converters():  # it warns on import about optional parts it does not find
            import mlflow
    except ImportError:
        raise InvalidArgument("MLflow URIs need the mlflow package: pip install 'honed[mlflow]'") from None
    return mlflow


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """MLflow's exceptions as honed's domain errors, first line only; its log lines, warnings and progress bars
    swallowed, so a command's output stays honed's."""
    from mlflow.exceptions import MlflowException

    try:
        with quiet_converters():
            yield
    except HonedError:
        raise
    except MlflowException as exc:
        first = first_line(exc)
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in first.lower():
            raise ModelNotFound(f"{what}: {first}") from None
        raise InvalidArgument(f"{what}: {first}") from None


def fetch(uri: str, *, mlflow_uri: str | None = None, cache_dir: Path | None = None) -> MlflowModel:
    """The MLflow ONNX model ``uri`` names, downloaded into the cache unless it already lies there."""
    server = tracking_uri(mlflow_uri)
    mlflow = _mlflow()
    check_server(server)
    client = mlflow.MlflowClient(tracking_uri=server)
    name, version, run_id, resolved, key = _locate(client, uri)
    folder = (cache_dir or default_cache_dir()) / hashlib.sha256(server.encode()).hexdigest()[:12] / key / name
    if not (folder / MLMODEL_FILE).is_file():
        _download(mlflow, server, resolved, folder)
    return MlflowModel(
        uri=uri,
        resolved_uri=resolved,
        tracking_uri=server,
        name=name,
        version=version,
        run_id=run_id,
        folder=folder,
        model_file=folder / _onnx_data(folder, uri),
    )


def _locate(client: Any, uri: str) -> tuple[str, str | None, str | None, str, str]:
    """``(name, version, run_id, uri by version or run, cache key)`` of a ``models:/`` or ``runs:/`` URI."""
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].partition("/")
        if not run_id or not path.strip("/") or {".", ".."} & {run_id, *path.split("/")}:
            raise InvalidArgument(f"{uri!r}: a run URI is runs:/RUN_ID/PATH, e.g. runs:/0a1b2c/model")
        with _mlflow_errors(f"MLflow run {run_id} not found"):
            client.get_run(run_id)
        path = path.strip("/")
        return path.rsplit("/", 1)[-1], None, run_id, f"runs:/{run_id}/{path}", f"runs/{run_id}/{path}"
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name in ("", ".", "..") or "/" in name or not alias:
            raise InvalidArgument(f"{uri!r}: a model URI is models:/NAME/VERSION or models:/NAME@ALIAS")
        with _mlflow_errors(f"MLflow model {name!r} has no alias {alias!r}"):
            mv = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = rest.partition("/")
        if name in ("", ".", "..") or not number.isdigit():
            raise InvalidArgument(f"{uri!r}: a model URI is models:/NAME/VERSION or models:/NAME@ALIAS")
        with _mlflow_errors(f"MLflow model {name!r} has no version {number}"):
            mv = client.get_model_version(name, number)
    version = str(mv.version)
    return name, version, mv.run_id, f"models:/{name}/{version}", f"models/{name}/{version}"


def _download(mlflow: Any, server: str, resolved: str, folder: Path) -> None:
    """Download ``resolved`` beside ``folder`` and move it into place once it is whole and of the onnx flavour."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with _mlflow_errors(f"cannot download {resolved}"):
            got = mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=str(staging), tracking_uri=server)
        local = Path(got)
        _onnx_data(local, resolved)
        if folder.exists():  # another process fetched it meanwhile; theirs is as good as ours
            return
        local.replace(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _onnx_data(folder: Path, uri: str) -> str:
    """The ONNX file's name in an MLflow model folder; a folder without ``MLmodel`` or of another flavour is
    refused with the flavours it has."""
    import yaml

    mlmodel = folder / MLMODEL_FILE
    if not mlmodel.is_file():
        raise InvalidModel(f"{uri} is not an MLflow model: it has no {MLMODEL_FILE} file")
    flavours = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    if FLAVOUR not in flavours:
        have = ", ".join(sorted(flavours)) or "none"
        raise InvalidModel(
            f"{uri} is an MLflow model of flavour {have}, not onnx; log it with mlflow.onnx, or convert it with "
            "`honed import` and log the ONNX file"
        )
    data = str(flavours[FLAVOUR].get("data") or "model.onnx")
    if not (folder / data).is_file():
        raise InvalidModel(f"{uri}: its onnx flavour names {data}, which is not among its artifacts")
    return data


def runtime_options(runtime: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The flavour's ``onnx_execution_providers`` and ``onnx_session_options`` for recipe.json's runtime.

    Thread pinning is left out: the CPU ids it names belong to the machine honed measured on."""
    from honed.runtime.config import RuntimeConfig

    config = RuntimeConfig.from_dict(dict(runtime))
    if config.backend != "onnxruntime":
        raise InvalidArgument(
            f"the winner runs on {config.backend}, and MLflow's onnx flavour runs ONNX Runtime; "
            "optimize with --backends onnxruntime to write it to MLflow"
        )
    spin = "1" if config.spinning else "0"
    extra = {"session.intra_op.allow_spinning": spin, "session.inter_op.allow_spinning": spin}
    extra.update({k: v for k, v in sorted(config.options.items()) if k.startswith("session.")})
    options: dict[str, Any] = {
        "graph_optimization_level": _GRAPH_LEVELS[config.graph_optimization],
        "execution_mode": config.execution_mode,
        "extra_session_config": extra,
    }
    if config.threads:
        options["intra_op_num_threads"] = config.threads
    if config.inter_op_threads:
        options["inter_op_num_threads"] = config.inter_op_threads
    return list(_PROVIDERS[config.provider]), options


def mlflow_backends(backends: str | None) -> str:
    """The ``--backends`` of a search whose winner goes to MLflow: onnxruntime, the runtime of MLflow's onnx
    flavour, by default; a list naming another is refused before the search rather than its winner after it."""
    names = [b.strip() for b in (backends or "onnxruntime").split(",") if b.strip()]
    others = [b for b in names if b != "onnxruntime"]
    if others:
        raise InvalidArgument(
            f"--to-mlflow writes MLflow's onnx flavour, which runs ONNX Runtime: leave {', '.join(others)} "
            "out of --backends"
        )
    return "onnxruntime"


def check_writable(name: str, *, mlflow_uri: str | None = None) -> str:
    """Refuse a bad registered-model name or an unreachable server before a long search; the server's URI."""
    if not name or "/" in name or "@" in name or ":" in name:
        raise InvalidArgument(f"--to-mlflow {name!r}: an MLflow model name has no '/', '@' or ':'")
    server = tracking_uri(mlflow_uri)
    _mlflow()
    check_server(server)
    return server


def log_winner(
    out_dir: Path,
    name: str,
    *,
    mlflow_uri: str | None = None,
    source: str | None = None,
    source_model: MlflowModel | None = None,
    lineage: dict[str, str] | None = None,
    experiment: str = "honed",
) -> LoggedVersion:
    """Log the winner in the optimize folder ``out_dir`` as a new version of the MLflow model ``name``.

    The run holds recipe.json, report.json and import.json (when the folder or the source's holds one) as
    artifacts; the version is tagged with its source (path, or MLflow URI and the version it resolved to) and
    ``lineage`` (``honed.*`` keys)."""
    import json

    import onnx

    from honed.intake.record import RECORD_FILE
    from honed.model.artifact import winner_file
    from honed.search.document import REPORT_FILE

    model_file = winner_file(out_dir)
    if model_file.suffix.lower() != ".onnx" or not model_file.is_file():
        raise InvalidArgument(f"{out_dir} holds no model.onnx (MLflow's onnx flavour takes ONNX, not IR)")
    recipe_file = out_dir / "recipe.json"
    if not recipe_file.is_file():
        raise InvalidArgument(f"{out_dir} holds no recipe.json: it is not an optimize output folder")
    providers, session_options = runtime_options(json.loads(recipe_file.read_text())["runtime"])
    server = check_writable(name, mlflow_uri=mlflow_uri)
    mlflow = _mlflow()
    proto = onnx.load(str(model_file))
    artifacts = [recipe_file, out_dir / REPORT_FILE]
    for folder in (out_dir, source_model.folder if source_model else None, Path(source).parent if source else None):
        if folder is not None and (folder / RECORD_FILE).is_file():
            artifacts.append(folder / RECORD_FILE)
            break
    tags = {"honed.source": source_model.resolved_uri if source_model else str(source or "")}
    if source_model is not None:
        tags["honed.source_uri"] = source_model.uri
        tags["honed.source_tracking_uri"] = source_model.tracking_uri
    tags.update(lineage or {})
    mlflow.set_tracking_uri(server)
    with _mlflow_errors(f"cannot write {name} to MLflow at {server}"):
        mlflow.set_experiment(experiment)
        with mlflow.start_run() as run:
            for path in artifacts:
                if path.is_file():
                    mlflow.log_artifact(str(path), artifact_path="honed")
            # MLflow 3 names a logged model; 2.x took the same as an artifact path
            where = {"name": "model"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "model"}
            info = mlflow.onnx.log_model(
                proto,
                **where,
                registered_model_name=name,
                onnx_execution_providers=providers,
                onnx_session_options=session_options,
                save_as_external_data=proto.ByteSize() > 2**31 - 1024,
                await_registration_for=30,
            )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient(tracking_uri=server)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
    return LoggedVersion(name=name, version=version, run_id=run.info.run_id, tracking_uri=server)


def tag_version(logged: LoggedVersion, key: str, value: str) -> None:
    """Set a tag on a version :func:`log_winner` created (e.g. the honed registry version it became)."""
    mlflow = _mlflow()
    with _mlflow_errors(f"cannot tag {logged.uri}"):
        mlflow.MlflowClient(tracking_uri=logged.tracking_uri).set_model_version_tag(
            logged.name, logged.version, key, value
        )
