"""Every registered backend passes the contract battery (honed.runtime.checks); the registry is lazy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from honed.errors import InvalidArgument
from honed.runtime import BackendSpec, backend_specs, register_backend
from honed.runtime.checks import check_backend

BACKENDS = [spec.name for spec in backend_specs()]


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_keeps_the_contract(name: str, tmp_path: Path) -> None:
    check_backend(name, tmp_path)


def test_registry_refuses_a_taken_name_and_a_bad_target() -> None:
    with pytest.raises(InvalidArgument, match="already registered"):
        register_backend(BackendSpec("openvino", "somewhere.else:Backend"))
    with pytest.raises(InvalidArgument, match="module:Class"):
        BackendSpec("broken", "no_colon")


def test_importing_runtime_loads_no_optional_library() -> None:
    code = "import sys, honed.runtime; print(sorted(m for m in sys.modules if m.startswith(('openvino', 'nncf'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(out.strip()) == []


def test_a_spec_says_what_is_missing() -> None:
    spec = BackendSpec("ghost", "ghost.backend:Ghost", requires=("no_such_module_honed",), install="ghost")
    assert (
        spec.unmet()
        == "backend 'ghost' is not installed (no_such_module_honed missing); install it with: pip install 'ghost'"
    )
