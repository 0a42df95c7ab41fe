"""Resident memory of this process: sampled in the background while a measurement runs."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


class RssSampler:
    """Context manager that records the peak RSS (bytes) of this process while it is open."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self._interval = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_bytes = 0

    def sample(self) -> int:
        rss = int(self._process.memory_info().rss)
        self.peak_bytes = max(self.peak_bytes, rss)
        return rss

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="honed-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


def current_rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)
