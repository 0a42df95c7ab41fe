"""Live access policy: the server's policy file is read again on SIGHUP and when it (or its JWKS file) changes.

:class:`PolicyReloader` owns one policy file. :meth:`PolicyReloader.reload` reads and validates the whole new
policy on a worker thread (the policy, its limits and revocations, and its key set, fetched from the IdP when
``jwks`` is a URL) and only then hands it to ``apply`` in one step, so every request is decided by the old policy
or the new one, never a mix. A new policy that fails validation changes nothing: the old one stays in force and
the reason is logged. Each reload is counted in ``honed_access_policy_reloads_total{result}``.

:meth:`PolicyReloader.watch` polls every ``poll_s`` seconds: it hashes the policy file and the JWKS file the
policy reads (when it is a file) and reloads when either hash differs from the last one it tried, so a file
caught half-written is tried again once complete, while a broken file is reported once, not on every poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from honed.errors import HonedError
from honed.serve.access import AccessPolicy
from honed.serve.metrics import ServeMetrics

log = logging.getLogger("honed.serve")

DEFAULT_POLL_S = 5.0
"""How often ``honed serve`` checks the policy file for changes (``--access-poll-s``; 0 turns polling off)."""


def _fingerprint(files: tuple[Path, ...]) -> tuple[tuple[str, str | None], ...]:
    out = []
    for path in files:
        try:
            digest: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digest = None
        out.append((str(path), digest))
    return tuple(out)


class PolicyReloader:
    """Reloads one policy file into a server (see the module docstring)."""

    def __init__(
        self,
        policy: AccessPolicy,
        apply: Callable[[AccessPolicy], None],
        *,
        metrics: ServeMetrics | None = None,
        load: Callable[[Path], AccessPolicy] = AccessPolicy.from_file,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        if policy.source is None:
            raise ValueError("a reloadable policy is one read from a file")
        self.path = policy.source
        self.current = policy
        self._apply = apply
        self._metrics = metrics
        self._load = load
        self.poll_s = poll_s
        self._seen = _fingerprint(policy.watched_files)
        self._lock = asyncio.Lock()

    async def reload(self, trigger: str = "SIGHUP") -> bool:
        """Read the policy file again and apply it; False (old policy kept, reason logged) when it is not valid."""
        async with self._lock:
            files = (self.path, *self.current.watched_files[1:])
            self._seen = await asyncio.to_thread(_fingerprint, files)
            try:
                policy = await asyncio.to_thread(self._load, self.path)
            except Exception as exc:  # whatever a new file does, the server keeps serving under the old policy
                why = str(exc) if isinstance(exc, HonedError) else f"unexpected {type(exc).__name__}: {exc}"
                log.error("access policy not reloaded (%s); the previous policy stays in force: %s", trigger, why)
                self._count("failure")
                return False
            self._apply(policy)
            self.current = policy
            self._seen = await asyncio.to_thread(_fingerprint, policy.watched_files)
            log.info("access policy reloaded from %s (%s): %d principal(s)", self.path, trigger, len(policy.principals))
            self._count("success")
            return True

    async def changed(self) -> bool:
        """Whether the policy file or its JWKS file differs from what the last reload read."""
        files = (self.path, *self.current.watched_files[1:])
        return await asyncio.to_thread(_fingerprint, files) != self._seen

    async def watch(self) -> None:
        """Poll for changes every ``poll_s`` seconds and reload on one, until cancelled."""
        while True:
            await asyncio.sleep(self.poll_s)
            if await self.changed():
                await self.reload("file changed")

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.policy_reloaded(result)


__all__ = ["DEFAULT_POLL_S", "PolicyReloader"]
