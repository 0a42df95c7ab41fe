"""Recipes and provenance: what was done to a model, so it can be done again to give the same bytes.

A :class:`Recipe` names the source model (sha256), the pass pipeline with resolved parameters, the backend
and runtime config that serve the result, how calibration data was drawn, the library versions, and the
output's sha256. :func:`build_model` applies a pipeline; :func:`stamp_provenance` writes honed's version,
the source hash and the recipe hash into the model's ``metadata_props`` (values that depend only on the
recipe, so stamping keeps the output deterministic).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from honed.canonical import digest
from honed.errors import InvalidArgument
from honed.jsonio import read_json, write_json
from honed.model.artifact import IR_FILE, ONNX_FILE, artifact_sha256, is_ir, remove_other_artifacts
from honed.model.loader import load_model, resolve_model_path, save_model
from honed.passes import PassContext, PassError, get_pass
from honed.runtime import RuntimeConfig
from honed.search.candidates import Step

RECIPE_FORMAT = "honed-recipe/1"
_LIBRARIES = ("honed", "onnx", "onnxruntime", "onnxslim", "openvino", "nncf", "numpy")
METADATA_KEYS = ("honed_version", "honed_source_sha256", "honed_recipe_sha256")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide what a recipe produces."""
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


RECIPE_FILE = "recipe.json"
"""The recipe's name in an optimize output folder."""


@dataclass(frozen=True)
class Recipe:
    """A replayable description of one optimized model."""

    source_sha256: str
    steps: tuple[Step, ...]
    runtime: RuntimeConfig
    calibration: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str | None] = field(default_factory=dict)
    output_sha256: str | None = None
    source_name: str = ""

    @property
    def needs_calibration(self) -> bool:
        return any(get_pass(s.name).needs_calibration for s in self.steps)

    def identity(self) -> dict[str, Any]:
        """What decides the output model's bytes (not the versions that happened to be installed)."""
        return {
            "source_sha256": self.source_sha256,
            "passes": [s.to_dict() for s in self.steps],
            "calibration": self.calibration if self.needs_calibration else {},
        }

    def sha256(self) -> str:
        return digest(self.identity())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECIPE_FORMAT,
            "source": {"sha256": self.source_sha256, "name": self.source_name},
            "passes": [s.to_dict() for s in self.steps],
            "backend": self.runtime.backend,
            "runtime": self.runtime.to_dict(),
            "calibration": self.calibration,
            "libraries": self.libraries,
            "recipe_sha256": self.sha256(),
            "output": {"sha256": self.output_sha256},
        }

    def write(self, path: Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        if data.get("format") != RECIPE_FORMAT:
            raise InvalidArgument(f"not a honed recipe (format {data.get('format')!r}; expected {RECIPE_FORMAT!r})")
        try:
            steps = tuple(Step.from_dict(s) for s in data["passes"])
            for s in steps:
                get_pass(s.name).validate_params(s.params)
            return cls(
                source_sha256=str(data["source"]["sha256"]),
                source_name=str(data["source"].get("name", "")),
                steps=steps,
                runtime=RuntimeConfig.from_dict(dict(data["runtime"])),
                calibration=dict(data.get("calibration") or {}),
                libraries=dict(data.get("libraries") or {}),
                output_sha256=(data.get("output") or {}).get("sha256"),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(f"the recipe is missing or has a bad field: {exc}") from exc

    @classmethod
    def read(cls, path: Path) -> Recipe:
        data = read_json(path, "recipe file")
        if not isinstance(data, dict):
            raise InvalidArgument(f"{path} is not a honed recipe (expected a JSON object)")
        return cls.from_dict(data)


def recorded_runtime(model: str | Path) -> tuple[RuntimeConfig, Path] | None:
    """The runtime an optimize output records for ``model`` (that folder, or a model file in it) and the recipe
    it came from: only where the ``recipe.json`` beside it made exactly this model (its output sha256), so a
    replay recipe kept beside a source model is not mistaken for one. None otherwise; a ``recipe.json`` that is
    not a honed recipe is an error naming it."""
    path = Path(model)
    recipe_path = (path if path.is_dir() else path.parent) / RECIPE_FILE
    if not recipe_path.is_file():
        return None
    try:
        recipe = Recipe.read(recipe_path)
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"{recipe_path}: {exc}; move it away to run the model at the given runtime flags"
        ) from None
    if recipe.output_sha256 is None or recipe.output_sha256 != artifact_sha256(resolve_model_path(path)):
        return None
    return recipe.runtime, recipe_path


def build_model(source: Path, steps: tuple[Step, ...], ctx: PassContext) -> onnx.ModelProto:
    """Apply ``steps`` in order to the model at ``source``; a pass that cannot handle it raises PassError."""
    model = load_model(source)
    for step in steps:
        model = get_pass(step.name).run(model, step.params, ctx)
    return model


def artifact_suffix(steps: tuple[Step, ...]) -> str:
    """The file suffix a pipeline's model is written with: ``.xml`` when its last pass writes OpenVINO IR."""
    return ".xml" if steps and get_pass(steps[-1].name).artifact == "openvino-ir" else ".onnx"


def build_artifact(source: Path, steps: tuple[Step, ...], ctx: PassContext, path: Path) -> Path:
    """Apply ``steps`` to the model at ``source`` and write the result at ``path`` with the suffix of
    :func:`artifact_suffix` (an ONNX file, or IR ``.xml`` + ``.bin``); returns the file written.

    A pass that writes IR can only be the last one; one earlier in the pipeline raises PassError."""
    if not steps:
        return save_model(load_model(source), path)
    *prefix, last = steps
    for step in prefix:
        if get_pass(step.name).artifact != "onnx":
            raise PassError(f"{step.name} writes {get_pass(step.name).artifact}: it can only be the last pass")
    model = build_model(source, tuple(prefix), ctx)
    return get_pass(last.name).export(model, last.params, ctx, path.with_suffix(artifact_suffix(steps)))


def write_artifact(built: Path, recipe: Recipe, out_dir: Path, honed_version: str) -> Path:
    """Write the model built at ``built`` into ``out_dir`` with honed's provenance (``model.onnx``, or
    ``model.xml`` + ``model.bin`` for IR, whose provenance goes in its ``rt_info`` under ``honed``), removing
    the other format's files there; returns the model file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    values = provenance(recipe, honed_version)
    if is_ir(built):
        ov = importlib.import_module("openvino")
        ov_model = ov.Core().read_model(str(built))
        for key, value in values.items():
            ov_model.set_rt_info(value, ["honed", key])
        dest = out_dir / IR_FILE
        ov.save_model(ov_model, str(dest), compress_to_fp16=False)
    else:
        dest = save_model(stamp_provenance(load_model(built), recipe, honed_version), out_dir / ONNX_FILE)
    remove_other_artifacts(out_dir, dest)
    return dest


def provenance(recipe: Recipe, honed_version: str) -> dict[str, str]:
    """honed's provenance keys for a model made by ``recipe`` (values that depend only on the recipe)."""
    return {
        "honed_version": honed_version,
        "honed_source_sha256": recipe.source_sha256,
        "honed_recipe_sha256": recipe.sha256(),
    }


def stamp_provenance(model: onnx.ModelProto, recipe: Recipe, honed_version: str) -> onnx.ModelProto:
    """Set honed's provenance keys in ``metadata_props`` (replacing old ones); other keys are kept."""
    values = provenance(recipe, honed_version)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value
    return model
