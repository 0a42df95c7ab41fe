"""``honed serve``: serve models over the Open Inference Protocol (KServe V2), REST and gRPC."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Any

import typer

from honed.errors import InvalidArgument

COMMANDS = {
    "serve": "Serve models over KServe V2 REST and gRPC with dynamic batching, until SIGTERM.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)


def serve(
    path: Path | None = typer.Argument(
        None, help="A model folder (e.g. the output of `honed optimize`), an .onnx file, or a repository folder."
    ),
    repository: Path | None = typer.Option(
        None, "--repository", "-r", help="Model repository: <name>/<version>/model.onnx plus optional config.yaml."
    ),
    http: str = typer.Option("127.0.0.1:8000", "--http", help="HOST:PORT for V2 REST; 'off' to turn it off."),
    grpc: str = typer.Option("127.0.0.1:8001", "--grpc", help="HOST:PORT for V2 gRPC; 'off' to turn it off."),
    max_batch_size: int | None = typer.Option(None, "--max-batch-size", help="Most rows per model run (default 32)."),
    max_queue_delay_ms: float | None = typer.Option(
        None, "--max-queue-delay-ms", help="Longest a request waits for company while instances are busy (default 2)."
    ),
    max_queue_size: int | None = typer.Option(
        None, "--max-queue-size", help="Queued requests before 429 (default 1024)."
    ),
    no_batching: bool = typer.Option(False, "--no-batching", help="Run every request on its own."),
    instances: int | None = typer.Option(None, "--instances", help="Sessions per model version (default 1)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads per instance (default 1)."),
    pin_cores: bool = typer.Option(False, "--pin-cores", help="Pin each instance's threads to its own cores."),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", help="Largest request body accepted, in MiB (413 above)."),
    drain_timeout_s: float = typer.Option(
        30.0, "--drain-timeout", help="Seconds to let in-flight requests finish after SIGTERM."
    ),
    registry: str | None = typer.Option(
        None,
        "--registry",
        envvar="HONED_REGISTRY",
        help="Serve from this model registry (e.g. sqlite:///~/.honed/registry.db): the --model refs, or every "
        "model's 'production' alias when none is given.",
    ),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="A registry model to serve: NAME, NAME:3 or NAME@alias (repeatable)."
    ),
    jurisdiction: list[str] = typer.Option(
        [],
        "--jurisdiction",
        help="A jurisdiction this server is approved for, e.g. AE (repeatable or comma list); enforces residency.",
    ),
    allow_unlabelled: bool = typer.Option(
        False,
        "--allow-unlabelled",
        help="Opt out: serve versions without a residency label and requests that declare no X-Data-Residency.",
    ),
    actor: str | None = typer.Option(
        None, "--actor", envvar="HONED_ACTOR", help="Who this server is in the audit log; default honed-serve@HOST."
    ),
    access: Path | None = typer.Option(
        None,
        "--access",
        help="Access policy (YAML/JSON): bearer-token principals and the models and actions each may use; "
        "every request but the health probes must then authenticate (see `honed access token`).",
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="PEM certificate (chain): serve REST and gRPC over TLS."
    ),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
    tls_client_ca: Path | None = typer.Option(
        None, "--tls-client-ca", help="PEM CA: require client certificates it signed (mutual TLS)."
    ),
) -> None:
    """Serve models over KServe V2 REST and gRPC with dynamic batching, until SIGTERM.

    Per-model config files in the repository override the knobs given here.
    """
    from honed.serve.access import AccessPolicy
    from honed.serve.metrics import ServeMetrics
    from honed.serve.security import ResidencyGuard, normalize_jurisdictions
    from honed.serve.server import ServerOptions, run

    jurisdictions = normalize_jurisdictions(jurisdiction)
    if path is not None and repository is not None:
        raise InvalidArgument("give either PATH or --repository, not both")
    source = path if path is not None else repository
    if model and source is not None:
        raise InvalidArgument("give either PATH/--repository or --model (served from --registry), not both")
    if model and registry is None:
        raise InvalidArgument("--model serves from a registry: give --registry URL (or set HONED_REGISTRY)")
    if source is None and not model and registry is None:
        raise InvalidArgument(
            "nothing to serve: give a model folder, an .onnx file, --repository models/, or --registry URL --model NAME"
        )
    if source is not None and not source.exists():
        raise InvalidArgument(f"{source} does not exist")
    if source is not None and jurisdictions and not allow_unlabelled:
        raise InvalidArgument(
            "models served from files carry no residency label, so a server with --jurisdiction refuses them: "
            "serve labelled versions with --registry URL --model NAME, or opt out with --allow-unlabelled"
        )
    defaults = _defaults(max_batch_size, max_queue_delay_ms, max_queue_size, no_batching, instances, threads, pin_cores)
    if not max_body_mb > 0:
        raise InvalidArgument(f"--max-body-mb must be > 0, got {max_body_mb}")
    options = ServerOptions(
        http=None if http.lower() == "off" else http,
        grpc=None if grpc.lower() == "off" else grpc,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        drain_timeout_s=drain_timeout_s,
        tls=_tls(tls_cert, tls_key, tls_client_ca),
    )
    policy = AccessPolicy.from_file(access) if access is not None else None
    # Validate the knobs once up front, so a bad flag fails before anything binds.
    from honed.serve.config import ModelServingConfig

    ModelServingConfig.from_dict(defaults)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="honed serve: %(message)s")
    exposed = [a for a in (options.http, options.grpc) if a is not None and not _loopback(_host(a))]
    if exposed and policy is None:
        logging.getLogger("honed.serve").warning(
            "listening on %s without --access: anyone who can reach it can call every model", ", ".join(exposed)
        )
    metrics = ServeMetrics()
    reg = None
    catalog = None
    if source is None:
        from honed.registry import open_registry
        from honed.serve.registry_source import RegistryCatalog, production_refs

        logging.getLogger("alembic").setLevel(logging.WARNING)  # schema upgrades are not serving news
        reg = open_registry(registry)  # an unreachable database fails here, before anything binds
        try:
            model = list(model) or production_refs(reg)
            for ref in model:
                reg.resolve(ref)  # an unknown name, version or alias is bad input: exit 2 before binding
        except BaseException:
            reg.close()
            raise
        who = actor or f"honed-serve@{socket.gethostname()}"
        catalog = RegistryCatalog(
            reg, model, jurisdictions=jurisdictions, allow_unlabelled=allow_unlabelled, actor=who, metrics=metrics
        )
    residency = ResidencyGuard(
        jurisdictions,
        allow_unlabelled=allow_unlabelled,
        metrics=metrics,
        audit=reg,
        actor=actor or f"honed-serve@{socket.gethostname()}",
    )
    where = str(source) if source is not None else f"registry {reg.url if reg is not None else registry}"

    def listening(server: Any) -> None:
        parts = []
        if server.http_port is not None:
            parts.append(f"HTTP on {_host(options.http)}:{server.http_port}")
        if server.grpc_port is not None:
            parts.append(f"gRPC on {_host(options.grpc)}:{server.grpc_port}")
        logging.getLogger("honed.serve").info("listening: %s; loading models from %s", ", ".join(parts), where)

    try:
        run(
            source,
            options,
            defaults=defaults,
            on_listening=listening,
            metrics=metrics,
            catalog=catalog,
            residency=residency,
            access=policy,
        )
    finally:
        if reg is not None:
            reg.close()


def _host(address: str | None) -> str:
    return (address or "").rpartition(":")[0]


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> Any:
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        return None
    if cert is None or key is None:
        raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
    from honed.serve.tls import TlsFiles

    return TlsFiles(cert, key, client_ca)


def _defaults(
    max_batch_size: int | None,
    max_queue_delay_ms: float | None,
    max_queue_size: int | None,
    no_batching: bool,
    instances: int | None,
    threads: int | None,
    pin_cores: bool,
) -> dict[str, Any]:
    batching: dict[str, Any] = {}
    if max_batch_size is not None:
        batching["max_batch_size"] = max_batch_size
    if max_queue_delay_ms is not None:
        batching["max_queue_delay_ms"] = max_queue_delay_ms
    if max_queue_size is not None:
        batching["max_queue_size"] = max_queue_size
    if no_batching:
        batching["enabled"] = False
    defaults: dict[str, Any] = {}
    if batching:
        defaults["batching"] = batching
    if instances is not None:
        defaults["instances"] = instances
    if threads is not None:
        defaults["threads_per_instance"] = threads
    if pin_cores:
        defaults["pin_cores"] = True
    return defaults
