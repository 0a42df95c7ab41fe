"""A local base image for the image tests: Debian bookworm (debootstrap's minbase) with python3, python3-venv and
ca-certificates, ``docker import``ed as :data:`BASE_TAG`. No image registry is needed; once built, the image in the
local store is reused. Build it by hand with ``python -m tests.deploy.base_image``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BASE_TAG = "honed-test-base:bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-venv,ca-certificates"


def docker_problem() -> str | None:
    """Why the image tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"docker info fails: {(done.stderr.strip().splitlines() or ['no daemon'])[-1]}"
    return None


def have_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0


def ensure_base_image(tag: str = BASE_TAG) -> str | None:
    """Build ``tag`` unless the local store has it; None when done, else why it cannot be built."""
    if have_image(tag):
        return None
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    with tempfile.TemporaryDirectory(prefix="honed-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        boot = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(rootfs), MIRROR],
            capture_output=True,
            text=True,
            check=False,
        )
        if boot.returncode != 0:
            return f"debootstrap failed: {(boot.stdout + boot.stderr).strip().splitlines()[-1:]}"
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        with subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE) as tar:
            importing = ["docker", "import", "-", tag]
            imported = subprocess.run(importing, stdin=tar.stdout, capture_output=True, check=False)
        if imported.returncode != 0 or tar.returncode != 0:
            return f"docker import failed: {imported.stderr.decode(errors='replace').strip()}"
    return None


if __name__ == "__main__":
    problem = docker_problem() or ensure_base_image()
    print(problem or f"{BASE_TAG} is ready")
    raise SystemExit(1 if problem else 0)
