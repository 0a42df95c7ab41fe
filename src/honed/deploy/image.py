"""``honed deploy image``: build honed's serving image with Docker on a base the user names, and measure it.

The Dockerfile is ``Dockerfile.cpu`` (:mod:`honed.deploy.dockerfiles`); its build context holds honed's wheel,
built from this source tree, and the wheels of its dependencies for the base's Python, so the image installs
offline into a virtualenv and carries no compiler, no pip and no development dependency. The build then starts
the image once as its non-root user on a read-only root filesystem with a tiny model and reports the image's
size and its cold start (``docker run`` to ``/v2/health/ready``)::

    from honed.deploy.image import build_image
    report = build_image("debian:bookworm-slim-with-python", "honed:0.1.0-cpu", wheelhouse=Path("wheels"))
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed import __version__
from honed.deploy.dockerfiles import dockerfile
from honed.errors import BackendUnavailable, InvalidArgument
from honed.fields import Document
from honed.serve.contract import GRPC_PORT, HTTP_PORT, READY_PATH

READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ImageReport(Document):
    """What was built: the tag, its base, its size in bytes, and seconds from ``docker run`` to ready."""

    tag: str
    base: str
    size_bytes: int
    cold_start_s: float


def docker(*args: str, timeout: float = 600.0) -> str:
    """Run ``docker ARGS``; its stdout, or a :class:`BackendUnavailable` with the last line it printed."""
    if shutil.which("docker") is None:
        raise BackendUnavailable("docker is not installed (Debian: apt-get install docker.io)")
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(f"docker {args[0]} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        raise BackendUnavailable(f"docker {args[0]} failed: {lines[-1]}")
    return done.stdout


def check_daemon() -> None:
    """A clear error when Docker is not installed or no daemon answers."""
    if shutil.which("docker") is None:
        raise BackendUnavailable("docker is not installed (Debian: apt-get install docker.io)")
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"no Docker daemon answers ({exc}); start dockerd") from None


def base_python(base: str) -> str:
    """``X.Y`` of the base image's ``python3``; the base must already be in the local image store."""
    try:
        docker("image", "inspect", "--format", "{{.Id}}", base, timeout=30)
    except BackendUnavailable:
        raise InvalidArgument(f"--base {base!r} is not a local image: docker pull it or build it first") from None
    try:
        out = docker("run", "--rm", "--network", "none", "--entrypoint", "python3", base, "-c",
                     "import sys, venv; print('%d.%d' % sys.version_info[:2])", timeout=120)  # fmt: skip
    except BackendUnavailable:
        raise InvalidArgument(f"--base {base!r} has no python3 with its venv module (Debian: python3-venv)") from None
    return out.strip()


def source_tree() -> Path:
    """The honed source tree this module was loaded from (its wheel is built from it)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise InvalidArgument("honed is not running from its source tree: give --wheelhouse holding honed's wheel")
    return root


def fill_wheelhouse(wheelhouse: Path, python: str) -> Path:
    """honed's wheel (built from the source tree) and its dependencies' wheels for Python ``python``, in
    ``wheelhouse``; wheels already there are kept, so a second build downloads nothing. Returns honed's wheel."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for old in wheelhouse.glob(f"honed-{__version__}-*.whl"):
        old.unlink()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _pip([*pip, "wheel", "--no-deps", "-w", str(wheelhouse), str(source_tree())])
    (wheel,) = wheelhouse.glob(f"honed-{__version__}-*.whl")
    download = [*pip, "download", "--only-binary=:all:", "--python-version", python, "--find-links", str(wheelhouse),
                "-d", str(wheelhouse), str(wheel)]  # fmt: skip
    try:
        _pip([*download, "--no-index"])  # every wheel already there: no index is asked
    except BackendUnavailable:
        _pip(download)
    return wheel


def _pip(command: Sequence[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        raise BackendUnavailable(f"pip {command[4]} failed: {lines[-1]}")


def build_image(base: str, tag: str, *, wheelhouse: Path | None = None) -> ImageReport:
    """Build ``tag`` from ``Dockerfile.cpu`` on ``base``, then measure its size and cold start."""
    check_daemon()
    python = base_python(base)
    with tempfile.TemporaryDirectory(prefix="honed-image-") as tmp:
        context = Path(tmp)
        wheels = context / "wheels"
        fill_wheelhouse(wheelhouse or wheels, python)
        if wheelhouse is not None:
            wheels.mkdir()
            for wheel in wheelhouse.glob("*.whl"):
                _link_or_copy(wheel, wheels / wheel.name)
        (context / "Dockerfile").write_text(dockerfile("cpu", base=base), encoding="utf-8")
        try:
            docker("build", "--quiet", "--build-arg", f"BASE={base}", "-t", tag, str(context), timeout=1800)
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"the image did not build: {exc}") from None
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).strip())
    return ImageReport(tag, base, size, cold_start(tag))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def cold_start(tag: str) -> float:
    """Seconds from ``docker run`` to ready for ``tag`` serving a tiny model, read-only, as its own user."""
    import onnx

    from honed.passes.tiny_models import make_mlp

    with tempfile.TemporaryDirectory(prefix="honed-cold-") as tmp:
        model = Path(tmp) / "tiny" / "1" / "model.onnx"
        model.parent.mkdir(parents=True)
        onnx.save(make_mlp(), model)
        for path in (model, model.parent, model.parent.parent, Path(tmp)):
            path.chmod(0o755 if path.is_dir() else 0o644)
        container = Container.start(tag, mounts=[(Path(tmp), "/models")])
        try:
            return container.wait_ready()
        finally:
            container.stop()


@dataclass
class Container:
    """A running ``honed serve`` container, its ports published on 127.0.0.1 only."""

    id: str
    http_port: int
    grpc_port: int
    started: float
    scheme: str = "http"
    final_logs: str = ""

    @classmethod
    def start(
        cls,
        tag: str,
        *,
        mounts: Sequence[tuple[Path, str]] = (),
        args: Sequence[str] = (),
        extra: Sequence[str] = (),
        scheme: str = "http",
    ) -> Container:
        """``docker run`` with a read-only root filesystem, a tmpfs /tmp and ``mounts`` read-only; ``args``
        replace the image's ``serve`` command, ``extra`` go to ``docker run`` (e.g. ``--group-add``)."""
        volumes = [f"--volume={host.resolve()}:{inside}:ro" for host, inside in mounts]
        started = time.perf_counter()
        cid = docker("run", "--detach", "--read-only", "--tmpfs", "/tmp:rw,size=64m", "--cap-drop", "ALL",
                     "--security-opt", "no-new-privileges", "--publish", f"127.0.0.1::{HTTP_PORT}",
                     "--publish", f"127.0.0.1::{GRPC_PORT}", *volumes, *extra, tag, *args).strip()  # fmt: skip
        return cls(cid, _published(cid, HTTP_PORT), _published(cid, GRPC_PORT), started, scheme)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S, context: Any = None) -> float:
        """Poll the readiness probe; seconds since ``docker run`` when it first answers 200."""
        url = f"{self.scheme}://127.0.0.1:{self.http_port}{READY_PATH}"
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if not self.running():
                raise BackendUnavailable(f"the container exited before it was ready: {self.logs()[-500:]}")
            time.sleep(0.1)
        raise BackendUnavailable(f"the container was not ready within {timeout_s:.0f} s: {self.logs()[-500:]}")

    def logs(self) -> str:
        done = subprocess.run(["docker", "logs", self.id], capture_output=True, text=True, check=False)
        return done.stdout + done.stderr

    def stop(self, grace_s: int = 30) -> int:
        """SIGTERM, up to ``grace_s`` seconds to drain, then the exit code; the container is removed, its output
        kept in :attr:`final_logs`."""
        try:
            docker("stop", "--time", str(grace_s), self.id, timeout=grace_s + 30)
        except BaseException:
            subprocess.run(["docker", "rm", "--force", self.id], capture_output=True, check=False)
            raise
        return self.wait_exit()

    def terminate(self) -> None:
        """Send SIGTERM (what Kubernetes does first) and return at once, the container still draining."""
        docker("kill", "--signal", "TERM", self.id)

    def running(self) -> bool:
        return docker("inspect", "--format", "{{.State.Running}}", self.id).strip() == "true"

    def wait_exit(self, timeout_s: float = 60.0) -> int:
        """The exit code once the container stops; it is then removed, its output kept in :attr:`final_logs`."""
        try:
            code = int(docker("wait", self.id, timeout=timeout_s).strip())
            self.final_logs = self.logs()
            return code
        finally:
            subprocess.run(["docker", "rm", "--force", self.id], capture_output=True, check=False)


def _published(cid: str, port: int) -> int:
    return int(docker("port", cid, f"{port}/tcp").splitlines()[0].rsplit(":", 1)[1])
