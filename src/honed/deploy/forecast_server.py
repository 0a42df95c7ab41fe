"""``honed plan forecast-server``: the predictive replica count over HTTP, for KEDA's ``metrics-api`` scaler.

For every predictive placement of a plan, ``GET /forecast/<deployment>`` answers JSON::

    {"deployment": "fraud-scorer", "replicas": 7, "forecast": {"forecast_rps": ..., "margin_rps": ...,
     "provisioned_rps": ..., "level_rps": ..., "horizon_s": ..., "replicas": ...}, "observed_rps": ...,
     "reactive_replicas": ..., "history": "...csv", "history_end": ..., "served_at": ...}

``replicas`` is computed by :func:`honed.plan.predictive.floor_for_placement` (the same forecast floor the
simulated predictive policy runs) from the deployment's load history, a CSV of ``time, requests/s`` that an
exporter keeps appending to; the file is re-read when it changes. KEDA reads ``replicas`` with
``valueLocation: replicas`` and ``targetValue: 1`` (AverageValue), so the HPA it drives proposes exactly that
count next to the CPU trigger and takes the larger: the forecast raises the floor, never scales in alone.
With a Prometheus server (``--prometheus``, or the one ``honed plan --prometheus`` recorded in the plan for a
placement without a CSV), the history is the CSV's rows followed by the request rate Prometheus holds for the
deployment's model over ``--since``, re-read at most every ``refresh_s`` seconds
(:func:`honed.plan.live.merged_history`).
``GET /forecast`` lists every deployment; ``GET /healthz`` is the liveness endpoint. Errors are JSON with an
``error`` field (404 for an unknown deployment, 503 when the history cannot be read).

Callers authenticate with a bearer token (``Authorization: Bearer <token>``, compared in constant time; KEDA
sends it from a ``TriggerAuthentication``); anything else is 401 with a ``WWW-Authenticate: Bearer`` challenge.
``/healthz`` stays open for the kubelet's probes. A server made without a token answers anyone, which
``honed plan forecast-server`` allows only with ``--insecure-no-auth``. Every connection has ``timeout_s`` to
send its whole request head, and each read and write on it waits at most that long, so a client that sends
slowly (or not at all) is cut off instead of holding a thread.

The HTTP layer is the standard library's threading server: the work per request is a cached
:class:`~honed.plan.predictive.PlacementFloor`, recomputed only when a history file changes.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from honed.errors import HonedError, InvalidArgument
from honed.plan.document import Placement, Plan

if TYPE_CHECKING:
    from honed.plan.predictive import PlacementFloor
    from honed.plan.prometheus import PrometheusReader

FORECAST_PORT = 8080
FORECAST_PATH = "/forecast"
TOKEN_ENV = "HONED_FORECAST_TOKEN"
"""The environment variable ``honed plan forecast-server`` reads the bearer token from, without ``--token-file``."""
DEFAULT_TIMEOUT_S = 10.0


def read_token(token_file: str | Path | None) -> str | None:
    """The bearer token callers must present: the file's content (stripped), else ``$HONED_FORECAST_TOKEN``."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"--token-file {token_file}: cannot read it ({exc})") from None
        if not token:
            raise InvalidArgument(f"--token-file {token_file} is empty; write the bearer token into it")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


@dataclass
class ForecastService:
    """The forecasts of a plan's predictive placements, each recomputed when its history file changes."""

    plan: Plan
    history: dict[str, Path | None]
    """Deployment name -> its load history CSV (None: Prometheus alone)."""
    clock: Callable[[], float] = time.time
    prometheus: PrometheusReader | None = None
    """Where the live part of every history comes from, if anywhere."""
    since_s: float = 86400.0
    refresh_s: float = 15.0
    _cache: dict[str, tuple[tuple[float, ...], PlacementFloor]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_plan(
        cls,
        plan: Plan,
        *,
        history: str | Path | None = None,
        history_dir: str | Path | None = None,
        deployments: list[str] | None = None,
        prometheus: PrometheusReader | None = None,
        since_s: float = 86400.0,
    ) -> ForecastService:
        """Pick the plan's predictive placements and their histories.

        A history is ``history`` (one file, one deployment), else ``history_dir/<deployment>.csv``, else the
        placement's ``autoscaling.history`` (as ``honed plan`` resolved it); with ``prometheus`` (or a Prometheus
        URL the plan recorded) a placement may have none, and every history continues with Prometheus' samples.
        """
        placements = [
            p for p in plan.placements if p.autoscaling.predictive and (not deployments or p.deployment in deployments)
        ]
        if not placements:
            which = f" named {', '.join(deployments)}" if deployments else ""
            raise InvalidArgument(f"the plan has no predictive placement{which} to forecast for")
        if history is not None and len(placements) > 1:
            raise InvalidArgument(
                "--history is one file for one deployment; the plan has several predictive placements "
                f"({', '.join(p.deployment for p in placements)}): pick one with --deployment or use --history-dir"
            )
        if prometheus is None:
            recorded = [p.live for p in placements if p.live is not None and not p.autoscaling.history]
            if recorded and history is None and history_dir is None:
                from honed.plan.prometheus import PrometheusReader

                prometheus = PrometheusReader(recorded[0].prometheus, recorded[0].step_s)
        paths: dict[str, Path | None] = {}
        for p in placements:
            name = p.deployment
            if history is not None:
                path = Path(history)
            elif history_dir is not None:
                path = Path(history_dir) / f"{name}.csv"
            elif p.autoscaling.history:
                path = Path(p.autoscaling.history)
            elif prometheus is not None:
                paths[name] = None
                continue
            else:
                raise InvalidArgument(f"deployment {name!r}: no load history; give --history or --history-dir")
            paths[name] = path
        service = cls(plan.only(placements), paths, prometheus=prometheus, since_s=since_s)
        for name in paths:
            service.forecast(name)  # fail at start on a missing or malformed history, not on KEDA's first poll
        return service

    def placement(self, name: str) -> Placement:
        if name not in self.history:
            raise InvalidArgument(f"no predictive deployment {name!r}; this server forecasts {', '.join(self.history)}")
        return self.plan.placement(name)

    def floor(self, name: str) -> PlacementFloor:
        """The deployment's forecast floor, recomputed only when its history file changed."""
        from honed.plan.predictive import floor_for_placement, load_history

        placement = self.placement(name)
        path = self.history[name]
        key: tuple[float, ...] = ()
        if path is not None:
            try:
                st = path.stat()
            except OSError:
                raise InvalidArgument(f"load history not found: {path}") from None
            key = (st.st_mtime, st.st_size)
        if self.prometheus is not None:
            key = (*key, float(int(self.clock() // self.refresh_s)))
        with self._lock:
            cached = self._cache.get(name)
            if cached is None or cached[0] != key:
                if self.prometheus is None:
                    times, rates = load_history(str(path))
                else:
                    times, rates = self._live_history(self.prometheus, name, path)
                cached = (key, floor_for_placement(placement.autoscaling, times, rates))
                self._cache[name] = cached
        return cached[1]

    def _live_history(self, reader: PrometheusReader, name: str, path: Path | None) -> tuple[list[float], list[float]]:
        from honed.plan.live import merged_history, observe_rates

        merged = merged_history(path, *observe_rates(reader, name, self.since_s))
        if merged is None:
            raise InvalidArgument(
                f"no load history for {name!r}: Prometheus at {reader.url} holds fewer than two samples "
                f"of its request rate over the last {self.since_s:g} s"
            )
        return merged

    def source(self, name: str) -> str:
        """Where a deployment's history comes from, for the answer's ``history`` field."""
        parts = [str(p) for p in (self.history[name],) if p is not None]
        if self.prometheus is not None:
            parts.append(f"prometheus {self.prometheus.url}")
        return " + ".join(parts)

    def forecast(self, name: str) -> dict[str, Any]:
        """The JSON body of ``GET /forecast/<name>``."""
        floor = self.floor(name)
        return {"deployment": name, **floor.to_dict(), "history": self.source(name), "served_at": self.clock()}

    def all(self) -> dict[str, Any]:
        return {"deployments": {name: self.forecast(name) for name in self.history}}


def _handler(service: ForecastService, token: str | None, timeout_s: float) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {token}".encode() if token is not None else None

    class Handler(BaseHTTPRequestHandler):
        server_version = "honed-forecast"
        timeout = timeout_s  # each read and write on the connection

        def setup(self) -> None:
            super().setup()
            # The whole request head within timeout_s, however slowly it trickles in: past that, the socket is
            # shut and the blocked read returns.
            self._deadline = threading.Timer(timeout_s, self._cut_off)
            self._deadline.daemon = True
            self._deadline.start()

        def _cut_off(self) -> None:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def parse_request(self) -> bool:
            self._deadline.cancel()
            return super().parse_request()

        def finish(self) -> None:
            self._deadline.cancel()
            with contextlib.suppress(OSError):
                super().finish()

        def _authorized(self) -> bool:
            if expected is None:
                return True
            given = self.headers.get_all("Authorization") or []
            return len(given) == 1 and hmac.compare_digest(given[0].strip().encode(), expected)

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path).rstrip("/")
            try:
                if path == "/healthz":
                    self._send(200, {"status": "ok"})
                elif not self._authorized():
                    self._send(401, {"error": "a bearer token is required: Authorization: Bearer <token>"})
                elif path == FORECAST_PATH:
                    self._send(200, service.all())
                elif path.startswith(FORECAST_PATH + "/"):
                    name = path[len(FORECAST_PATH) + 1 :]
                    if name not in service.history:
                        self._send(404, {"error": f"no predictive deployment {name!r}"})
                    else:
                        self._send(200, service.forecast(name))
                else:
                    self._send(404, {"error": f"no such path {path!r}; try {FORECAST_PATH}/<deployment>"})
            except HonedError as exc:
                self._send(503, {"error": str(exc)})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = (json.dumps(body) + "\n").encode("utf-8")
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="honed-forecast"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # KEDA polls every 15 s; one line per poll is noise

    return Handler


def make_server(
    service: ForecastService,
    host: str = "127.0.0.1",
    port: int = FORECAST_PORT,
    *,
    token: str | None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server; ``serve_forever()`` runs it, ``shutdown()`` stops it.

    ``token``: the bearer token every forecast request must carry (None: no authentication, say so out loud);
    ``timeout_s``: how long a connection may take to send its request head, and any one read or write.
    """
    if token is not None and not token.strip():
        raise InvalidArgument("the forecast server's bearer token is empty")
    if not timeout_s > 0:
        raise InvalidArgument(f"--timeout must be > 0 s, got {timeout_s:g}")
    try:
        server = ThreadingHTTPServer((host, port), _handler(service, token, timeout_s))
    except OSError as exc:
        raise InvalidArgument(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    server.daemon_threads = True
    return server
