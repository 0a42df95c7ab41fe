"""Serving from a typed description: what to serve, how to listen, who may call, which knobs apply.

:class:`ServeOptions` says everything ``honed serve`` takes on its command line, as validated values;
:func:`run_server` builds the pieces from it (the model repository or the registry catalog, the residency guard,
the access policy, the metrics) and runs the server until SIGTERM. The CLI only turns flags into a
:class:`ServeOptions` and renders what it is told; a Python caller does the same::

    from honed.serve.launch import ServeOptions, run_server
    run_server(ServeOptions(source=Path("models")))

Nothing is bound before every option checked out: a bad knob, an unreadable policy, an unknown registry ref or
an unreachable registry database is a :class:`~honed.errors.HonedError` first.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honed.errors import InvalidArgument
from honed.serve.access import AccessPolicy
from honed.serve.config import ModelServingConfig
from honed.serve.metrics import ServeMetrics
from honed.serve.policy_reload import DEFAULT_POLL_S
from honed.serve.security import ResidencyGuard, normalize_jurisdictions
from honed.serve.server import Server, ServerOptions, run
from honed.serve.tls import TlsFiles
from honed.serve.tracing import Tracing, TracingConfig

if TYPE_CHECKING:
    from honed.registry import Registry
    from honed.serve.dataplane import DataPlane
    from honed.serve.registry_source import RegistryCatalog
    from honed.serve.rollout import RolloutFollower

log = logging.getLogger("honed.serve")

# (ServingDefaults field, path into a ModelServingConfig mapping); None fields are not given.
_KNOBS = (
    ("max_batch_size", ("batching", "max_batch_size")),
    ("max_queue_delay_ms", ("batching", "max_queue_delay_ms")),
    ("max_queue_size", ("batching", "max_queue_size")),
    ("max_queue_time_ms", ("batching", "max_queue_time_ms")),
    ("instances", ("instances",)),
    ("threads_per_instance", ("threads_per_instance",)),
)


@dataclass(frozen=True)
class ServingDefaults:
    """Serving knobs for every model; a model's own config file overrides them. ``None``: not given, so the
    model's config file or :class:`~honed.serve.config.ModelServingConfig`'s default applies."""

    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    max_queue_size: int | None = None
    max_queue_time_ms: float | None = None
    batching: bool = True
    instances: int | None = None
    threads_per_instance: int | None = None
    pin_cores: bool = False

    def __post_init__(self) -> None:
        ModelServingConfig.from_dict(self.to_dict())  # a bad knob fails here, before anything binds

    def to_dict(self) -> dict[str, Any]:
        """The knobs given, as the partial serving config the repository lays each model's config file over."""
        out: dict[str, Any] = {}
        for name, path in _KNOBS:
            value = getattr(self, name)
            if value is not None:
                *parents, leaf = path
                target = out
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[leaf] = value
        if not self.batching:
            out.setdefault("batching", {})["enabled"] = False
        if self.pin_cores:
            out["pin_cores"] = True
        return out


@dataclass(frozen=True)
class ServeOptions:
    """What to serve and how. Give ``source`` (a model folder, an .onnx file or a repository folder) or
    ``registry`` (with ``models`` refs like ``NAME``, ``NAME:3``, ``NAME@alias``; none: every model's
    ``production`` alias).

    ``jurisdictions`` approve this server for data of those jurisdictions and turn residency enforcement on;
    ``allow_unlabelled`` opts out for versions without a residency label and requests that declare none.
    ``access`` is an access policy or the YAML/JSON file to read it from; ``actor`` is this server in the audit
    log (default ``honed-serve@HOST``). A policy read from a file reloads on SIGHUP and, every ``access_poll_s``
    seconds (0: only on SIGHUP), when the file or its JWKS file changed. ``tracing`` turns on OpenTelemetry
    request tracing (:mod:`honed.serve.tracing`; the ``tracing`` extra).
    """

    source: Path | None = None
    registry: str | None = None
    models: tuple[str, ...] = ()
    server: ServerOptions = field(default_factory=ServerOptions)
    defaults: ServingDefaults = field(default_factory=ServingDefaults)
    jurisdictions: tuple[str, ...] = ()
    allow_unlabelled: bool = False
    access: AccessPolicy | Path | None = None
    actor: str | None = None
    access_poll_s: float = DEFAULT_POLL_S
    rollout_poll_s: float = 1.0
    tracing: TracingConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "jurisdictions", normalize_jurisdictions(self.jurisdictions))
        poll = self.access_poll_s
        if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 <= poll < math.inf:
            raise InvalidArgument(f"--access-poll-s must be a number of seconds >= 0 (0: only SIGHUP), got {poll!r}")
        every = self.rollout_poll_s
        if isinstance(every, bool) or not isinstance(every, int | float) or not 0 < every < math.inf:
            raise InvalidArgument(f"--rollout-poll-s must be a number of seconds > 0, got {every!r}")
        if self.models and self.source is not None:
            raise InvalidArgument("give either PATH/--repository or --model (served from --registry), not both")
        if self.models and self.registry is None:
            raise InvalidArgument("--model serves from a registry: give --registry URL (or set HONED_REGISTRY)")
        if self.source is None and self.registry is None:
            raise InvalidArgument(
                "nothing to serve: give a model folder, an .onnx file, --repository models/, "
                "or --registry URL --model NAME"
            )
        if self.source is not None and self.jurisdictions and not self.allow_unlabelled:
            raise InvalidArgument(
                "models served from files carry no residency label, so a server with --jurisdiction refuses them: "
                "serve labelled versions with --registry URL --model NAME, or opt out with --allow-unlabelled"
            )

    @property
    def who(self) -> str:
        """This server in the audit log."""
        return self.actor or f"honed-serve@{socket.gethostname()}"


@dataclass(frozen=True)
class Listening:
    """Where a started server listens (``HOST:PORT`` as bound; None: that transport is off) and where its models
    load from."""

    http: str | None
    grpc: str | None
    source: str
    metrics: str | None = None


def tls_files(cert: Path | None, key: Path | None, client_ca: Path | None = None) -> TlsFiles | None:
    """TLS from a certificate and key (mutual TLS with ``client_ca``); None when neither is given."""
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        return None
    if cert is None or key is None:
        raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
    return TlsFiles(cert, key, client_ca)


def run_server(options: ServeOptions, *, on_listening: Callable[[Listening], None] | None = None) -> None:
    """Serve what ``options`` describe until SIGTERM/SIGINT; ``on_listening`` hears once both listeners are bound
    (models load after that)."""
    source = options.source
    if source is not None and not source.exists():
        raise InvalidArgument(f"{source} does not exist")
    policy = AccessPolicy.from_file(options.access) if isinstance(options.access, Path) else options.access
    exposed = [
        a
        for a in (options.server.http, options.server.grpc, options.server.metrics)
        if a is not None and not _loopback(_host(a))
    ]
    if exposed and policy is None:
        log.warning(
            "listening on %s without --access: anyone who can reach it can call every model", ", ".join(exposed)
        )
    tracing = Tracing.start(options.tracing) if options.tracing is not None else None  # a missing SDK fails here
    metrics = ServeMetrics()
    reg = None
    catalog = None
    if source is None:
        from honed.registry import open_registry
        from honed.serve.registry_source import RegistryCatalog, production_refs

        logging.getLogger("alembic").setLevel(logging.WARNING)  # schema upgrades are not serving news
        reg = open_registry(options.registry)  # an unreachable database fails here, before anything binds
        try:
            refs = list(options.models) or production_refs(reg)
            for ref in refs:
                reg.resolve(ref)  # an unknown name, version or alias is bad input, reported before binding
        except BaseException:
            reg.close()
            raise
        catalog = RegistryCatalog(
            reg,
            refs,
            jurisdictions=options.jurisdictions,
            allow_unlabelled=options.allow_unlabelled,
            actor=options.who,
            metrics=metrics,
        )
    residency = ResidencyGuard(
        options.jurisdictions,
        allow_unlabelled=options.allow_unlabelled,
        metrics=metrics,
        audit=reg,
        actor=options.who,
    )
    where = str(source) if source is not None else f"registry {reg.url if reg is not None else options.registry}"

    def listening(server: Server) -> None:
        if on_listening is not None:
            on_listening(
                Listening(
                    http=_bound(options.server.http, server.http_port),
                    grpc=_bound(options.server.grpc, server.grpc_port),
                    source=where,
                    metrics=_bound(options.server.metrics, server.metrics_port),
                )
            )

    try:
        run(
            source,
            options.server,
            defaults=options.defaults.to_dict(),
            on_listening=listening,
            metrics=metrics,
            catalog=catalog,
            residency=residency,
            access=policy,
            access_poll_s=options.access_poll_s,
            follow=None if catalog is None or reg is None else _follower(reg, catalog, residency, options),
            tracing=tracing,
        )
    finally:
        if reg is not None:
            reg.close()
        if tracing is not None:
            tracing.shutdown()  # exports the spans still buffered


def _follower(
    reg: Registry, catalog: RegistryCatalog, residency: ResidencyGuard, options: ServeOptions
) -> Callable[[DataPlane], RolloutFollower]:
    """How a registry server builds the follower of its models' rollouts, once its dataplane exists."""
    from honed.registry.rollouts import Rollouts
    from honed.serve.rollout import RolloutFollower

    holder = f"{options.who}@{socket.gethostname()}:{os.getpid()}"

    def build(dataplane: DataPlane) -> RolloutFollower:
        return RolloutFollower(
            Rollouts(reg),
            catalog,
            dataplane.repository,
            dataplane.metrics,
            holder=holder,
            residency=residency,
            poll_s=options.rollout_poll_s,
        )

    return build


def _bound(address: str | None, port: int | None) -> str | None:
    return None if port is None else f"{_host(address)}:{port}"


def _host(address: str | None) -> str:
    return (address or "").rpartition(":")[0]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"
