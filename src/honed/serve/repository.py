"""The model repository: finds models on disk, reads their serving configs, and owns their running executors.

Layouts it understands::

    models/                      a repository root (``honed serve --repository models/``)
      mlp/
        config.yaml              optional ModelServingConfig (or config.json); defaults work without it
        1/model.onnx             one folder per version, named by a whole number
        2/model.xml, model.bin   (OpenVINO IR, as optimize writes an NNCF winner; served on OpenVINO)
      magika/
        model.onnx               a model folder without versions serves as version 1
        recipe.json              (e.g. the output folder of ``honed optimize``)

    out/                         ``honed serve out/``: one folder with model.onnx, served as ``out`` version 1
    model.onnx                   ``honed serve model.onnx``: served as ``model`` version 1

Every version found is loaded on start (warm-up included) before the server says it is ready. A model that fails
to load is reported in the repository index with its reason and skipped; the rest still serve. ``load`` re-reads a
model from disk and swaps it in only when every version loaded: if the new one fails, the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from honed.errors import HonedError, InvalidArgument, ModelNotFound, NotFound, Unavailable
from honed.model.artifact import IR_FILE, IR_SUFFIX, check_ir, is_ir
from honed.model.spec import Signature
from honed.serve.batching import RunObserver, RunSlots
from honed.serve.config import ModelServingConfig

log = logging.getLogger("honed.serve")

CONFIG_FILES = ("config.yaml", "config.yml", "config.json")
MODEL_FILE = "model.onnx"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Executor(Signature, Protocol):
    """What the repository needs of a running model (``honed.serve.instances.ModelExecutor`` is one)."""

    @property
    def max_batch_size(self) -> int: ...

    async def infer(
        self,
        inputs: dict[str, np.ndarray[Any, Any]],
        *,
        timeout_s: float | None = None,
        observer: RunObserver | None = None,
        waited_s: float = 0.0,
    ) -> dict[str, np.ndarray[Any, Any]]: ...

    def refuse_now(self) -> None:
        """Raise :class:`~honed.errors.QueueTimeExceeded` when a request arriving now would be refused by the
        queue-time estimate anyway (asked before the request is read); return when it may be queued."""
        ...

    def run_counts(self) -> tuple[int, int]:
        """Batch runs started so far and the requests they carried together."""
        ...

    async def close(self, drain: bool = True) -> None: ...


ExecutorFactory = Callable[..., Awaitable[Executor]]
"""``await factory(model_path, config, name=..., version=..., metrics=..., slots=...)``: starts one model version
(``slots``: shared by the model's versions, see :class:`~honed.serve.batching.RunSlots`)."""


@dataclass(frozen=True)
class ModelSource:
    """Where one model lives on disk: its version files and its optional config file."""

    name: str
    folder: Path
    versions: Mapping[str, Path]
    config_file: Path | None = None
    origin: Mapping[str, Any] = field(default_factory=dict)
    """Per version, where it came from (e.g. a registry's ModelVersion); opaque to the repository."""


class Catalog(Protocol):
    """Where models come from instead of a folder (``honed.serve.registry_source.RegistryCatalog`` is one).

    Its methods may block (a database); the repository calls them in a worker thread.
    """

    def discover(self) -> tuple[list[ModelSource], list[tuple[str, str]]]: ...

    def source(self, name: str) -> ModelSource: ...

    def loaded(self, source: ModelSource, versions: Sequence[str]) -> None: ...

    def unloaded(self, source: ModelSource, versions: Sequence[str], reason: str) -> None: ...


@dataclass
class ModelState:
    """One model as the index reports it: its live versions, or why it is not serving."""

    name: str
    source: ModelSource | None
    executors: dict[str, Executor] = field(default_factory=dict)
    config: ModelServingConfig | None = None
    state: str = "UNAVAILABLE"
    reason: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    slots: RunSlots = field(default_factory=RunSlots)
    """Shared by its versions' executors: their runs in progress together, at most its ``instances``."""

    def latest(self) -> str:
        return max(self.executors, key=int)


def _model_file(folder: Path) -> Path | None:
    """The model in a (version) folder: ``model.onnx``, else OpenVINO IR ``model.xml`` (an optimize winner)."""
    for name in (MODEL_FILE, IR_FILE):
        if (folder / name).is_file():
            return folder / name
    return None


def _checked(path: Path) -> Path:
    """``path``, refused with a one-line reason when it is an IR without its ``.bin``."""
    return check_ir(path) if is_ir(path) else path


def model_name_for(path: Path) -> str:
    """A V2 model name derived from a folder or file name (``out/`` -> ``out``, ``mlp.onnx`` -> ``mlp``)."""
    stem = path.stem if path.is_file() else path.resolve().name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
    return name


def scan_model_folder(name: str, folder: Path) -> ModelSource:
    """Find the versions and config file of one model folder."""
    if not _NAME.match(name):
        raise InvalidArgument(f"model folder {folder} has a name that cannot be a model name: {name!r}")
    versions: dict[str, Path] = {}
    for child in sorted(folder.iterdir()):
        found = _model_file(child) if child.is_dir() and child.name.isdigit() else None
        if found is not None:
            versions[str(int(child.name))] = _checked(found)
    single = _model_file(folder)
    if not versions and single is not None:
        versions["1"] = _checked(single)
    if not versions:
        raise ModelNotFound(f"model folder {folder} holds no {MODEL_FILE} and no version folders (1/{MODEL_FILE})")
    config_file = next((folder / f for f in CONFIG_FILES if (folder / f).is_file()), None)
    return ModelSource(name, folder, versions, config_file)


def discover(path: Path) -> tuple[list[ModelSource], list[tuple[str, str]]]:
    """Models under ``path`` (a repository root, a model folder or a model file), and (name, reason) of bad ones."""
    path = path.expanduser()
    if not path.exists():
        raise ModelNotFound(f"no such model or repository: {path}")
    if path.is_file():
        if path.suffix not in (".onnx", IR_SUFFIX):
            raise InvalidArgument(
                f"{path} is not an .onnx file, an OpenVINO IR .xml, a model folder or a repository folder"
            )
        return [ModelSource(model_name_for(path), path.parent, {"1": _checked(path)})], []
    if _model_file(path) is not None:
        return [scan_model_folder(model_name_for(path), path)], []
    sources: list[ModelSource] = []
    bad: list[tuple[str, str]] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            sources.append(scan_model_folder(child.name, child))
        except HonedError as exc:
            bad.append((child.name, str(exc)))
    if not sources and not bad:
        log.warning(
            "%s holds no models yet: put each in %s/<name>/<version>/%s and load it with "
            "POST /v2/repository/models/<name>/load",
            path,
            path,
            MODEL_FILE,
        )
    return sources, bad


def read_config(source: ModelSource, defaults: Mapping[str, Any] | None = None) -> ModelServingConfig:
    """The model's serving config: ``defaults`` (e.g. CLI knobs) with its config file laid over them."""
    data: dict[str, Any] = _deep_copy(defaults or {})
    recipe = source.folder / "recipe.json"
    if recipe.is_file():
        runtime = _recipe_runtime(recipe)
        if runtime is not None:
            data["runtime"] = {**runtime, **data.get("runtime", {})}
    if source.config_file is not None:
        data = _merge(data, _load_config_file(source.config_file))
    try:
        return ModelServingConfig.from_dict(data)
    except InvalidArgument as exc:
        where = source.config_file or "the serving defaults"
        raise InvalidArgument(f"model {source.name!r}: bad serving config in {where}: {exc}") from None


def _load_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # json and yaml raise their own syntax error types
        raise InvalidArgument(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path} must hold a mapping of serving settings, got {type(data).__name__}")
    return data


def _recipe_runtime(path: Path) -> dict[str, Any] | None:
    """The runtime settings an optimize recipe chose, when it records them as a ``runtime`` mapping."""
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("ignoring %s: not readable JSON", path)
        return None
    runtime = recipe.get("runtime") if isinstance(recipe, dict) else None
    return dict(runtime) if isinstance(runtime, dict) else None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


class ModelRepository:
    """The models a server serves, by name and version; load, unload and hot reload."""

    def __init__(
        self,
        path: Path | None,
        factory: ExecutorFactory,
        *,
        defaults: Mapping[str, Any] | None = None,
        metrics: Any = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.path = path
        self.catalog = catalog
        self._factory = factory
        self._defaults = dict(defaults or {})
        self._metrics = metrics
        self._models: dict[str, ModelState] = {}
        self._retiring: set[asyncio.Task[None]] = set()  # executors being closed, awaited by close()
        self._single = path is not None and (path.is_file() or _model_file(path) is not None)

    async def start(self) -> None:
        """Load every model found; bad ones are logged, kept in the index with their reason, and skipped.

        When the path is one model (a folder or file) rather than a repository, its failure is raised instead.
        """
        if self.catalog is not None:
            sources, bad = await asyncio.to_thread(self.catalog.discover)
        elif self.path is None:
            return
        else:
            sources, bad = discover(self.path)
        for name, reason in bad:
            log.error("skipping model %s: %s", name, reason)
            self._models[name] = ModelState(name, None, state="UNAVAILABLE", reason=reason)
        for source in sources:
            state = self._models.setdefault(source.name, ModelState(source.name, source))
            try:
                await self._load(state, source)
            except HonedError as exc:
                if self._single:
                    raise  # serving one model that cannot load: nothing to serve, say why and stop
                log.error("skipping model %s: %s", source.name, exc)

    def names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str, version: str | None = None) -> tuple[str, Executor]:
        """The executor serving ``name`` (``version``, or the highest loaded version when None)."""
        state = self._models.get(name)
        if state is None:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown model {name!r}; models in this repository: {known}")
        if not state.executors:
            why = f": {state.reason}" if state.reason else ""
            raise Unavailable(f"model {name!r} is not loaded{why}")
        if not version:
            version = state.latest()
        elif version not in state.executors:
            loaded = ", ".join(sorted(state.executors, key=int))
            raise NotFound(f"model {name!r} has no version {version!r}; loaded versions: {loaded}")
        return version, state.executors[version]

    def versions(self, name: str) -> list[str]:
        state = self._models.get(name)
        return sorted(state.executors, key=int) if state else []

    def index(self) -> list[dict[str, str]]:
        """The V2 repository index: one entry per model version (or per model that is not loaded)."""
        rows: list[dict[str, str]] = []
        for name in self.names():
            state = self._models[name]
            if state.executors:
                rows.extend({"name": name, "version": v, "state": "READY"} for v in sorted(state.executors, key=int))
            else:
                row = {"name": name, "state": state.state}
                if state.reason:
                    row["reason"] = state.reason
                rows.append(row)
        return rows

    async def load(self, name: str) -> None:
        """(Re)load ``name`` from disk; if the new version fails, the old one keeps serving and the error is raised."""
        if self.catalog is not None:
            source = await asyncio.to_thread(self.catalog.source, name)
            await self._load(self._models.setdefault(name, ModelState(name, source)), source)
            return
        if self.path is None:
            raise NotFound("this server has no model repository to load from")
        folder = self.path if self._single else self.path / name
        if self._single:
            if name != next(iter(self._models), name):
                raise NotFound(f"unknown model {name!r}; this server serves only {', '.join(self.names())}")
            sources, _ = discover(self.path)
            source = sources[0]
        else:
            if not _NAME.match(name) or not folder.is_dir():
                raise NotFound(f"no model folder {folder} in the repository")
            source = scan_model_folder(name, folder)
        state = self._models.setdefault(name, ModelState(name, source))
        await self._load(state, source)

    async def _load(self, state: ModelState, source: ModelSource) -> None:
        async with state.lock:
            try:
                config = read_config(source, self._defaults)
                if not state.executors:  # else the versions serving keep their cap until the new ones replace them
                    state.slots.resize(config.instances)
                started: dict[str, Executor] = {}
                try:
                    for version, model_file in source.versions.items():
                        started[version] = await self._factory(
                            model_file,
                            config,
                            name=source.name,
                            version=version,
                            metrics=self._metrics,
                            slots=state.slots,
                        )
                    if self.catalog is not None:  # recorded before it serves; no record, no serving
                        await asyncio.to_thread(self.catalog.loaded, source, sorted(started, key=int))
                except BaseException:
                    for executor in started.values():
                        await executor.close(drain=False)
                    raise
            except HonedError as exc:
                if not state.executors:
                    state.state, state.reason = "UNAVAILABLE", str(exc)
                    raise
                raise type(exc)(f"{exc}; version(s) {', '.join(state.executors)} keep serving") from exc
            old, old_source = state.executors, state.source
            state.source, state.config, state.executors = source, config, started
            state.slots.resize(config.instances)
            state.state, state.reason = "READY", ""
            log.info("model %s ready, version(s) %s", source.name, ", ".join(sorted(started, key=int)))
        await self._retire(old, old_source, "reload")

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: new requests are refused, queued ones finish first."""
        state = self._models.get(name)
        if state is None:
            raise NotFound(f"unknown model {name!r}; models in this repository: {', '.join(self.names()) or 'none'}")
        async with state.lock:
            old, state.executors = state.executors, {}
            state.state, state.reason = "UNAVAILABLE", "unloaded"
        await self._retire(old, state.source, "unload")

    def config(self, name: str) -> ModelServingConfig | None:
        state = self._models.get(name)
        return state.config if state else None

    async def _retire(
        self, old: dict[str, Executor], source: ModelSource | None, reason: str, drain: bool = True
    ) -> None:
        """Close executors taken out of service, then record their unload. The closing runs in a task of its own
        that the caller's cancellation does not stop (a reload cancelled at shutdown still ends the versions it
        swapped out), and :meth:`close` waits for every such task."""
        if not old:
            return

        async def retire() -> None:
            for executor in old.values():
                await executor.close(drain=drain)
            if self.catalog is not None and source is not None:
                await asyncio.to_thread(self.catalog.unloaded, source, sorted(old, key=int), reason)

        task = asyncio.create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        await asyncio.shield(task)

    async def close(self, drain: bool = True) -> None:
        """Close every executor (after their queued work when ``drain``), after any load in progress has finished
        or failed, and wait for the versions already being taken out of service: when it returns, no model
        instance is left running."""
        for state in list(self._models.values()):
            async with state.lock:
                old, state.executors = state.executors, {}
            try:
                await self._retire(old, state.source, "shutdown", drain=drain)
            except HonedError as exc:
                log.error("could not record the unload of %s: %s", state.name, exc)
        for outcome in await asyncio.gather(*self._retiring, return_exceptions=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                log.error("closing a model version taken out of service failed: %s", outcome)


__all__ = [
    "Catalog",
    "ModelRepository",
    "ModelSource",
    "discover",
    "model_name_for",
    "read_config",
    "scan_model_folder",
]
