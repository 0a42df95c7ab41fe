"""``honed serve``: serve models over the Open Inference Protocol (KServe V2), REST and gRPC.

The flags become a :class:`honed.serve.launch.ServeOptions`; :func:`honed.serve.launch.run_server` does the rest.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from honed.cli.common import mlflow_uri_option, otlp_endpoint_of, use_mlflow_uri
from honed.errors import InvalidArgument
from honed.model.loader import is_mlflow_uri
from honed.serve.contract import GRPC_PORT, HTTP_PORT, METRICS_PORT

if TYPE_CHECKING:
    from honed.serve.launch import Listening

COMMANDS = {
    "serve": "Serve models over KServe V2 REST and gRPC with dynamic batching, until SIGTERM.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)


def serve(
    path: Path | None = typer.Argument(
        None,
        help="A model folder (e.g. the output of `honed optimize`), an .onnx file, a repository folder, or an "
        "MLflow ONNX model: models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH.",
    ),
    repository: Path | None = typer.Option(
        None, "--repository", "-r", help="Model repository: <name>/<version>/model.onnx plus optional config.yaml."
    ),
    http: str = typer.Option(f"127.0.0.1:{HTTP_PORT}", "--http", help="HOST:PORT for V2 REST; 'off' to turn it off."),
    grpc: str = typer.Option(f"127.0.0.1:{GRPC_PORT}", "--grpc", help="HOST:PORT for V2 gRPC; 'off' to turn it off."),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help=f"HOST:PORT of a listener that answers /metrics alone (e.g. 0.0.0.0:{METRICS_PORT}), for a scraper that "
        "must not reach the models; /metrics stays on the HTTP port too.",
    ),
    max_batch_size: int | None = typer.Option(None, "--max-batch-size", help="Most rows per model run (default 32)."),
    max_queue_delay_ms: float | None = typer.Option(
        None, "--max-queue-delay-ms", help="Longest a request waits for company while instances are busy (default 2)."
    ),
    max_queue_size: int | None = typer.Option(
        None, "--max-queue-size", help="Queued requests before 429 (default 1024)."
    ),
    max_queue_time_ms: float | None = typer.Option(
        None,
        "--max-queue-time-ms",
        help="Queue-time bound: a request that would wait (or waited) longer gets 429 + Retry-After (default 1000).",
    ),
    no_batching: bool = typer.Option(False, "--no-batching", help="Run every request on its own."),
    instances: int | None = typer.Option(None, "--instances", help="Sessions per model version (default 1)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads per instance (default 1)."),
    pin_cores: bool = typer.Option(False, "--pin-cores", help="Pin each instance's threads to its own cores."),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", help="Largest request body accepted, in MiB (413 above)."),
    max_concurrency: int = typer.Option(
        1024, "--max-concurrency", help="Requests in progress at once per transport (503 / RESOURCE_EXHAUSTED above)."
    ),
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
        "every request but the health probes must then authenticate (see `honed access token`); JWTs from an "
        "identity provider with an 'oidc' section; per-principal rate limits with 'limits'. Reloads on SIGHUP.",
    ),
    access_poll_s: float = typer.Option(
        5.0,
        "--access-poll-s",
        help="Seconds between checks of the --access file (and its JWKS file) for changes; 0: reload only on SIGHUP.",
    ),
    rollout_poll_s: float = typer.Option(
        1.0,
        "--rollout-poll-s",
        help="Seconds between a registry server's checks of its models' rollouts (weights, observations, decisions).",
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="PEM certificate (chain): serve REST and gRPC over TLS."
    ),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
    tls_client_ca: Path | None = typer.Option(
        None, "--tls-client-ca", help="PEM CA: require client certificates it signed (mutual TLS)."
    ),
    otlp_endpoint: str | None = typer.Option(
        None,
        "--otlp-endpoint",
        help="Trace requests with OpenTelemetry and export spans to this OTLP/HTTP receiver, e.g. "
        "http://127.0.0.1:4318 (needs the 'tracing' extra); honours W3C traceparent on REST and gRPC.",
    ),
    trace_sample: float | None = typer.Option(
        None,
        "--trace-sample",
        help="Share of requests traced when the caller's traceparent did not decide, 0..1 (default 1; 0.01: 1%).",
    ),
    mlflow_uri: str | None = mlflow_uri_option(),
) -> None:
    """Serve models over KServe V2 REST and gRPC with dynamic batching, until SIGTERM.

    Per-model config files in the repository override the knobs given here.
    """
    from honed.serve.launch import ServeOptions, ServingDefaults, run_server, tls_files
    from honed.serve.server import ServerOptions
    from honed.serve.tracing import TracingConfig

    if path is not None and repository is not None:
        raise InvalidArgument("give either PATH or --repository, not both")
    if path is not None and is_mlflow_uri(path):
        from honed.intake.mlflow import fetch

        use_mlflow_uri(mlflow_uri)
        path = fetch(str(path)).folder  # the MLflow model folder, so the model is served under its MLflow name
    if not max_body_mb > 0:
        raise InvalidArgument(f"--max-body-mb must be > 0, got {max_body_mb}")
    endpoint = otlp_endpoint_of(otlp_endpoint, trace_sample)
    tracing = None if endpoint is None else TracingConfig(endpoint, 1.0 if trace_sample is None else trace_sample)
    options = ServeOptions(
        source=path if path is not None else repository,
        registry=registry,
        models=tuple(model),
        server=ServerOptions(
            http=None if http.lower() == "off" else http,
            grpc=None if grpc.lower() == "off" else grpc,
            metrics=metrics,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            max_concurrency=max_concurrency,
            drain_timeout_s=drain_timeout_s,
            tls=tls_files(tls_cert, tls_key, tls_client_ca),
        ),
        defaults=ServingDefaults(
            max_batch_size=max_batch_size,
            max_queue_delay_ms=max_queue_delay_ms,
            max_queue_size=max_queue_size,
            max_queue_time_ms=max_queue_time_ms,
            batching=not no_batching,
            instances=instances,
            threads_per_instance=threads,
            pin_cores=pin_cores,
        ),
        jurisdictions=tuple(jurisdiction),
        allow_unlabelled=allow_unlabelled,
        access=access,
        actor=actor,
        access_poll_s=access_poll_s,
        rollout_poll_s=rollout_poll_s,
        tracing=tracing,
    )
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="honed serve: %(message)s")
    run_server(options, on_listening=_say_listening)


def _say_listening(where: Listening) -> None:
    transports = (("HTTP", where.http), ("gRPC", where.grpc), ("metrics", where.metrics))
    parts = [f"{kind} on {address}" for kind, address in transports if address]
    logging.getLogger("honed.serve").info("listening: %s; loading models from %s", ", ".join(parts), where.source)
