"""Building a candidate's model in a worker process, so the time budget can stop a pass that runs too long.

A pass cannot be interrupted from inside (quantizers and simplifiers are long C++ calls), so
:class:`Builder` runs pipelines in a long-lived spawned worker process and kills it when the time left runs
out (a new worker starts for the next build). A job is plain data; the worker rebuilds the calibration stream
from a :class:`~honed.search.datasource.DataSource`.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from honed.model.artifact import artifact_exists, artifact_files
from honed.passes import PassError

_SPAWN = multiprocessing.get_context("spawn")


class BuildTimeout(Exception):
    """The build did not finish in the time it was given (the worker was stopped)."""


@dataclass(frozen=True)
class BuildJob:
    """Everything a worker needs to build one pipeline's model."""

    source: Path
    steps: tuple[Any, ...]  # honed.search.candidates.Step
    backend: str
    calibration: Any  # honed.search.datasource.DataSource
    calibration_batch: int
    calibration_limit: int
    hardware: Any
    work_dir: Path
    out_path: Path
    """Where the model goes, with the suffix of :func:`honed.search.recipe.artifact_suffix` for ``steps``."""


def context_for(job: BuildJob) -> Any:
    """The PassContext a job's passes run with."""
    from honed.passes import PassContext

    calib = job.calibration

    def source() -> Any:
        return calib.batches(job.calibration_batch, job.calibration_limit)

    return PassContext(
        target_backend=job.backend,
        target_provider="cpu",
        hardware=job.hardware,
        calibration=source,
        work_dir=job.work_dir,
        seed=0,
    )


def _build_one(job: BuildJob) -> str | None:
    """Build one job in this process; returns an error message, or None when the model was written."""
    from honed.errors import HonedError
    from honed.search.recipe import build_artifact

    try:
        build_artifact(job.source, job.steps, context_for(job), job.out_path)
    except PassError as exc:
        return f"pass could not handle the model: {exc}"
    except HonedError as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in a third-party pass library: reported as this candidate's failure
        return f"{type(exc).__name__}: {exc}"
    return None


def _serve(conn: Connection) -> None:
    """The worker's loop: receive a job, build it, send back the error (or None); stop on None."""
    import logging

    import honed.search  # noqa: F401  (loaded once, before the first job is timed)

    # quantizers log advice on the root logger; the search reports what matters in its own table
    logging.getLogger().setLevel(logging.ERROR)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent went away
            return
        if job is None:
            return
        conn.send(_build_one(job))


class Builder:
    """One long-lived worker process that builds models; killed and replaced when a build runs out of time."""

    def __init__(self) -> None:
        self._process: Any = None
        self._conn: Connection | None = None
        self._busy = False

    def _start(self) -> Connection:
        if self._conn is None or self._process is None or not self._process.is_alive():
            parent, child = _SPAWN.Pipe()
            self._process = _SPAWN.Process(target=_serve, args=(child,), daemon=True)
            self._process.start()
            child.close()
            self._conn = parent
        return self._conn

    def build(self, job: BuildJob, timeout_s: float) -> Path:
        """Build ``job`` within ``timeout_s`` seconds; returns the model path.

        Raises :class:`PassError` with the worker's message when a pass failed, :class:`BuildTimeout` when time
        ran out (the worker is then stopped; the next build starts a new one).
        """
        job.out_path.parent.mkdir(parents=True, exist_ok=True)
        for path in artifact_files(job.out_path):
            path.unlink(missing_ok=True)
        conn = self._start()
        self._busy = True
        try:
            conn.send(job)
            ready = conn.poll(max(timeout_s, 0.1))
            error = conn.recv() if ready else None
            self._busy = not ready
        except (EOFError, OSError):
            self.close()
            raise PassError("the build worker died while building (out of memory or a crash in a pass)") from None
        if not ready:
            self.close()
            raise BuildTimeout(f"building took longer than the {timeout_s:.0f} s of budget left")
        if error is not None:
            raise PassError(str(error))
        if not artifact_exists(job.out_path):
            raise PassError("the build worker wrote no model")
        return job.out_path

    def close(self) -> None:
        """Stop the worker (politely when idle, by force when busy)."""
        if self._process is not None and self._process.is_alive():
            try:
                if self._busy or self._conn is None:
                    self._process.kill()
                else:
                    self._conn.send(None)
            except (OSError, EOFError):
                self._process.kill()
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process = None
        self._conn = None
        self._busy = False
