"""Real samples from an ``.npz`` file: ``{input name: array}``, first axis = samples.

The file is checked against the model's input specs before any sample is read, and read in batches straight
out of the zip member (stored or deflated), so a file far larger than memory streams through.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from honed.data.span import samples_to_read
from honed.errors import DataError
from honed.model.spec import TensorSpec, format_shape, input_mismatch


@dataclass(frozen=True)
class _Member:
    name: str
    member: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool
    offset: int

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


class NpzDataset:
    """A validated, streamable ``.npz`` of model inputs."""

    def __init__(self, path: str | Path, specs: list[TensorSpec]) -> None:
        self.path = Path(path).expanduser()
        self.specs = list(specs)
        if not self.path.is_file():
            raise DataError(f"data file not found: {self.path}")
        try:
            with zipfile.ZipFile(self.path) as archive:
                self._members = self._read_headers(archive)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{self.path} is not an .npz file (save inputs with numpy.savez): {exc}") from exc
        self._validate()
        counts = {m.shape[0] for m in self._members.values()}
        self.num_samples = counts.pop() if counts else 0

    def __repr__(self) -> str:
        return f"NpzDataset({str(self.path)!r}, samples={self.num_samples})"

    def describe(self) -> str:
        return f"{self.path.name} ({self.num_samples} samples)"

    def batches(self, batch_size: int, *, limit: int | None = None) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        """Yield dicts of ``batch_size`` samples (the last may be smaller), reading only one batch at a time."""
        total = samples_to_read(self.num_samples, batch_size, limit)
        with zipfile.ZipFile(self.path) as archive:
            streams = {name: self._open_rows(archive, m) for name, m in self._members.items()}
            try:
                done = 0
                while done < total:
                    n = min(batch_size, total - done)
                    yield {name: self._read_rows(streams[name], m, n) for name, m in self._members.items()}
                    done += n
            finally:
                for stream in streams.values():
                    stream.close()

    def _read_headers(self, archive: zipfile.ZipFile) -> dict[str, _Member]:
        members: dict[str, _Member] = {}
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with archive.open(info) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    reader = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, fortran, dtype = reader(fh)
                except ValueError as exc:
                    raise DataError(f"{self.path}: array {name!r} is not a valid .npy member: {exc}") from exc
                offset = fh.tell()
            if dtype.hasobject:
                raise DataError(f"{self.path}: array {name!r} holds Python objects; save plain numeric arrays")
            if len(shape) == 0:
                raise DataError(f"{self.path}: array {name!r} is a scalar; its first axis must count samples")
            members[name] = _Member(name, info.filename, np.dtype(dtype), tuple(shape), bool(fortran), offset)
        return members

    def _validate(self) -> None:
        expected = {s.name: s for s in self.specs}
        mismatch = input_mismatch(expected, self._members, "array")
        if mismatch:
            raise DataError(
                f"{self.path} does not fit the model: {mismatch}. The model's inputs are: {', '.join(sorted(expected))}"
            )
        for name, member in self._members.items():
            spec = expected[name]
            if member.dtype != spec.dtype:
                raise DataError(
                    f"{self.path}: array {name!r} is {member.dtype} but the model wants {spec.dtype} "
                    f"({spec.type_name}); convert it with .astype(np.{spec.dtype})"
                )
            if spec.shape is not None:
                if len(member.shape) != len(spec.shape):
                    raise DataError(
                        f"{self.path}: array {name!r} has shape {format_shape(member.shape)} but the model's input "
                        f"is {format_shape(spec.shape)}; the first axis counts samples, the rest must match"
                    )
                for axis, (want, got) in enumerate(zip(spec.shape[1:], member.shape[1:], strict=True), start=1):
                    if isinstance(want, int) and want != got:
                        raise DataError(
                            f"{self.path}: array {name!r} has {got} at axis {axis} but the model fixes it at {want} "
                            f"(model input {format_shape(spec.shape)}, array {format_shape(member.shape)})"
                        )
        counts = {m.shape[0] for m in self._members.values()}
        if len(counts) > 1:
            detail = ", ".join(f"{m.name}: {m.shape[0]}" for m in self._members.values())
            raise DataError(f"{self.path}: arrays disagree on the number of samples ({detail})")

    def _open_rows(self, archive: zipfile.ZipFile, member: _Member) -> IO[bytes]:
        fh = archive.open(member.member)
        fh.read(member.offset)
        return fh

    def _read_rows(self, stream: IO[bytes], member: _Member, n: int) -> np.ndarray[Any, Any]:
        if member.fortran_order:
            raise DataError(
                f"{self.path}: array {member.name!r} is stored in Fortran order and cannot be streamed; "
                "save it with numpy.ascontiguousarray(...)"
            )
        want = n * member.row_bytes
        buf = stream.read(want)
        if len(buf) != want:
            raise DataError(f"{self.path}: array {member.name!r} is truncated")
        return np.frombuffer(buf, dtype=member.dtype).reshape((n, *member.shape[1:])).copy()
