"""Content-addressed artifact storage: a model's bytes are stored once, under their sha256.

:class:`ArtifactStore` is the small interface the registry needs; :class:`LocalArtifactStore` keeps blobs in a
local folder (``<root>/sha256/ab/abcdef...``). A store for S3-compatible object storage can come later behind
the same four methods. Writes are atomic: bytes go to a temporary file that is fsynced and then renamed into
place, so a process killed mid-copy leaves at most a ``.part`` file (cleaned up by the next put), never a
blob under a hash it does not have.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from honed.errors import ModelNotFound
from honed.model import file_sha256

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    size: int


class ArtifactStore(Protocol):
    """Where artifact bytes live, addressed by their sha256."""

    def put(self, source: Path) -> StoredArtifact:
        """Copy ``source`` into the store (no-op when the same bytes are already there)."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def local_path(self, sha256: str) -> Path:
        """A local file holding the artifact (raises ModelNotFound when absent)."""
        ...

    def describe(self) -> str:
        """Where the store is, for messages."""
        ...


class LocalArtifactStore:
    """Blobs in a local folder; safe for several processes at once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def describe(self) -> str:
        return str(self.root)

    def _blob(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self._blob(sha256).is_file()

    def local_path(self, sha256: str) -> Path:
        p = self._blob(sha256)
        if not p.is_file():
            raise ModelNotFound(
                f"artifact sha256:{sha256} is missing from the artifact store at {self.root}; "
                "point HONED_ARTIFACTS at the store the model was registered into"
            )
        return p

    def put(self, source: Path) -> StoredArtifact:
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale_parts(tmp_dir)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".part", dir=tmp_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while block := src.read(_CHUNK):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self._blob(sha)
            if final.is_file() and final.stat().st_size == size and file_sha256(final) == sha:
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return StoredArtifact(sha, size)

    @staticmethod
    def _clean_stale_parts(tmp_dir: Path) -> None:
        """Remove ``.part`` files left by processes that no longer exist (killed mid-copy)."""
        for part in tmp_dir.glob("*.part"):
            pid_text = part.name.split("-", 1)[0]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
