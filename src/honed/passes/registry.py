"""The pass registry: a declarative table of pass names, where each pass lives and what it needs.

A :class:`PassSpec` names a pass and the class that implements it (``module:Class``), and declares what the
pass needs before it can run: optional libraries (``requires``), ISA extensions (``isa``, any one suffices) and
calibration data. The table is read without importing any pass module, so ``import honed.passes`` loads no
optional library (onnxslim, onnxruntime.transformers, nncf); a pass's module is imported the first time the
pass is asked for. :func:`register_pass` adds a pass from outside honed; a second spec with a taken name is
refused.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from honed.errors import InvalidArgument

if TYPE_CHECKING:
    from honed.passes.base import Pass, PassContext


@dataclass(frozen=True)
class PassSpec:
    """One registered pass: its name, its class as ``module:Class``, and what it needs.

    ``requires`` lists the importable modules the pass cannot run without (optional dependencies), with
    ``install`` the pip requirement that brings them; ``isa`` the ISA extensions it needs (any one; empty:
    none); ``needs_calibration`` whether it reads calibration data (the class says the same, checked on load).
    """

    name: str
    target: str
    requires: tuple[str, ...] = ()
    install: str | None = None
    isa: tuple[str, ...] = ()
    needs_calibration: bool = False

    def __post_init__(self) -> None:
        module, _, attr = self.target.partition(":")
        if not module or not attr:
            raise InvalidArgument(f"pass {self.name!r}: target must be 'module:Class', got {self.target!r}")

    def missing(self) -> list[str]:
        """The required modules that are not importable here (found without importing them)."""
        return [name for name in self.requires if not _importable(name)]

    def available(self) -> bool:
        """Whether every required module is installed."""
        return not self.missing()

    def unmet(self, ctx: PassContext) -> str | None:
        """Why this pass cannot run for ``ctx`` (a missing library, ISA or calibration data), or None."""
        missing = self.missing()
        if missing:
            hint = f"; install it with: pip install '{self.install}'" if self.install else ""
            return f"{', '.join(missing)} is not installed{hint}"
        if self.isa and ctx.hardware is not None and not ctx.has_isa(*self.isa):
            return f"{self.name} needs one of the ISA extensions {', '.join(self.isa)}, which the CPU lacks"
        if self.needs_calibration and ctx.calibration is None:
            return f"{self.name} needs calibration data; pass --data"
        return None

    def load(self) -> type[Pass]:
        """Import the pass's module and return its class (checked against this spec)."""
        from honed.passes.base import Pass

        module, _, attr = self.target.partition(":")
        cls = getattr(importlib.import_module(module), attr, None)
        if not (isinstance(cls, type) and issubclass(cls, Pass)):
            raise InvalidArgument(f"pass {self.name!r}: {self.target} is not a Pass subclass")
        if cls.__dict__.get("name") != self.name or cls.needs_calibration != self.needs_calibration:
            raise InvalidArgument(f"pass {self.name!r}: {self.target} does not declare what its spec declares")
        return cls


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package of a dotted name
        return False


_BUILTIN = (
    PassSpec("fp16", "honed.passes.fp16:Fp16Pass", requires=("onnxruntime.transformers",)),
    PassSpec("graph", "honed.passes.graph:GraphPass", requires=("onnxslim",), install="onnxslim"),
    PassSpec("int8-dynamic", "honed.passes.int8_dynamic:Int8DynamicPass", requires=("onnxruntime.quantization",)),
    PassSpec(
        "int8-static",
        "honed.passes.int8_static:Int8StaticPass",
        requires=("onnxruntime.quantization",),
        needs_calibration=True,
    ),
    PassSpec(
        "nncf-int8",
        "honed.passes.nncf:NncfInt8Pass",
        requires=("nncf",),
        install="honed[openvino]",
        needs_calibration=True,
    ),
    PassSpec("prune", "honed.passes.prune:PruneGraphPass"),
    PassSpec(
        "transformer-fusion",
        "honed.passes.transformer_fusion:TransformerFusionPass",
        requires=("onnxruntime.transformers",),
    ),
)

_SPECS: dict[str, PassSpec] = {}
_CLASSES: dict[str, type[Pass]] = {}


def register_pass(spec: PassSpec) -> None:
    """Add a pass to the registry; a second pass with a taken name is refused."""
    if spec.name in _SPECS:
        raise InvalidArgument(f"a pass named {spec.name!r} is already registered ({_SPECS[spec.name].target})")
    _SPECS[spec.name] = spec


for _spec in _BUILTIN:
    register_pass(_spec)


def pass_spec(name: str) -> PassSpec:
    """The spec registered as ``name``; an unknown name raises :class:`InvalidArgument` listing the known."""
    if name not in _SPECS:
        raise InvalidArgument(f"unknown pass {name!r}; known: {', '.join(sorted(_SPECS))}")
    return _SPECS[name]


def spec_for(cls: type[Pass]) -> PassSpec:
    """The registered spec of ``cls``; a class not in the registry (a test's, a caller's) gets one from itself."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    name = cls.__dict__.get("name", cls.__qualname__)
    spec = _SPECS.get(name)
    if spec is not None and spec.target == target:
        return spec
    return PassSpec(name, target, needs_calibration=cls.needs_calibration)


def pass_specs() -> list[PassSpec]:
    """Every registered spec, sorted by name (no pass module is imported)."""
    return [_SPECS[n] for n in sorted(_SPECS)]


def get_pass(name: str) -> Pass:
    """The registered pass called ``name``, its module imported on first use."""
    if name not in _CLASSES:
        _CLASSES[name] = pass_spec(name).load()
    return _CLASSES[name]()


def all_passes() -> list[Pass]:
    """Every registered pass, sorted by name."""
    return [get_pass(n) for n in sorted(_SPECS)]


def pass_names() -> list[str]:
    """Names of every registered pass, sorted."""
    return sorted(_SPECS)
