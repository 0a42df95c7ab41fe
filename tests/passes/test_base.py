"""Param validation, auto values, the registry and the default skip reasons."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest

from honed.errors import InvalidArgument
from honed.passes import AUTO, Param, Pass, PassContext, PassSpec, get_pass, register_pass


@dataclass(frozen=True)
class FakeHardware:
    isa: tuple[str, ...]


def test_param_validation_messages() -> None:
    level = Param("level", str, "basic", "how much", choices=("basic", "extended"))
    assert level.validate("extended") == "extended"
    with pytest.raises(InvalidArgument, match="choose from: basic, extended"):
        level.validate("all")
    ratio = Param("ratio", float, 0.5, "fraction", min=0.0, max=1.0)
    assert ratio.validate(1) == 1.0
    with pytest.raises(InvalidArgument, match=r"<= 1\.0"):
        ratio.validate(1.5)
    with pytest.raises(InvalidArgument, match="finite"):
        ratio.validate(float("nan"))
    count = Param("count", int, 1, "how many", min=1)
    with pytest.raises(InvalidArgument, match="whole number"):
        count.validate(True)
    names = Param("names", tuple, (), "some names", choices=("a", "b"))
    assert names.validate(["a", "b"]) == ("a", "b")
    with pytest.raises(InvalidArgument, match="list of strings"):
        names.validate("a")
    with pytest.raises(InvalidArgument, match="does not allow 'c'"):
        names.validate(["a", "c"])
    with pytest.raises(InvalidArgument, match="true or false"):
        Param("flag", bool, False, "a flag").validate("yes")


def test_a_broken_default_is_refused_when_the_pass_is_defined() -> None:
    with pytest.raises(InvalidArgument):
        Param("n", int, -1, "negative default", min=0)


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    with pytest.raises(InvalidArgument, match="already registered"):
        register_pass(PassSpec("graph", "somewhere.else:AnotherGraph"))
    with pytest.raises(InvalidArgument, match="unknown pass 'nope'; known: fp16, graph"):
        get_pass("nope")
    with pytest.raises(InvalidArgument, match="module:Class"):
        PassSpec("broken", "no_colon")


def test_a_pass_declaring_a_parameter_twice_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="twice"):

        class Twice(Pass):
            name: ClassVar[str] = "twice"
            description: ClassVar[str] = "declares n twice"
            params: ClassVar[tuple[Param, ...]] = (Param("n", int, 1, "n"), Param("n", int, 2, "n again"))


def test_importing_the_registry_loads_no_pass_module_or_optional_library() -> None:
    code = (
        "import sys, honed.passes; "
        "print(sorted(m for m in sys.modules if m.startswith(('honed.passes.', 'nncf', 'openvino', 'onnxslim'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(out.strip()) == ["honed.passes.base", "honed.passes.registry"]


def test_a_spec_says_what_is_missing() -> None:
    needy = PassSpec("needy", "honed.passes.graph:GraphPass", requires=("no_such_module_honed",), install="needy")
    assert needy.unmet(PassContext()) == "no_such_module_honed is not installed; install it with: pip install 'needy'"
    isa = PassSpec("isa", "honed.passes.graph:GraphPass", isa=("amx_int8",))
    assert isa.unmet(PassContext()) is None  # unknown hardware: not refused
    assert "amx_int8" in (isa.unmet(PassContext(hardware=FakeHardware(("avx2",)))) or "")
    assert isa.unmet(PassContext(hardware=FakeHardware(("amx_int8",)))) is None


def test_auto_values_follow_the_isa() -> None:
    dynamic = get_pass("int8-dynamic")
    without_vnni = PassContext(hardware=FakeHardware(("avx2", "fma")))
    with_vnni = PassContext(hardware=FakeHardware(("avx2", "avx512f", "avx512_vnni")))
    assert dynamic.validate_params({})["reduce_range"] == AUTO
    assert dynamic.resolve({}, without_vnni)["reduce_range"] is True
    assert dynamic.resolve({}, with_vnni)["reduce_range"] is False
    assert dynamic.resolve({}, PassContext())["reduce_range"] is True  # unknown hardware: the safe choice
    assert dynamic.resolve({"reduce_range": False}, without_vnni)["reduce_range"] is False
    static = get_pass("int8-static")
    assert static.resolve({}, with_vnni)["activation_type"] == "uint8"
    assert static.resolve({}, without_vnni)["activation_type"] == "int8"


def test_default_skip_reasons_name_the_target_and_missing_data() -> None:
    static = get_pass("int8-static")
    reason = static.skip_reason(PassContext(target_backend="openvino", target_provider="cpu"))
    assert reason is not None and "openvino/cpu" in reason
    reason = static.skip_reason(PassContext())
    assert reason is not None and "calibration data" in reason
