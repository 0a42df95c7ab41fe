"""How a container runs ``honed serve`` for one placement: the one place the serve command line is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from honed.errors import InvalidArgument
from honed.plan.document import Placement
from honed.serve.contract import GRPC_PORT, HTTP_PORT, METRICS_PORT

ACCESS_MOUNT = "/etc/honed/access"
ARTIFACTS_DIR = "artifacts"
"""The registry's artifact store, as a folder on the model volume (``HONED_ARTIFACTS`` when registering)."""
REGISTRY_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
TLS_MOUNT = "/etc/honed/tls"


@dataclass(frozen=True)
class ServingSecrets:
    """Kubernetes Secrets that turn on ``honed serve``'s access policy and TLS in every pod.

    ``access_secret`` holds ``access.yaml`` (``honed access token ... --policy access.yaml``, then
    ``kubectl create secret generic NAME --from-file=access.yaml``); ``tls_secret`` is a ``kubernetes.io/tls``
    Secret (``tls.crt``, ``tls.key``, e.g. from cert-manager). Probes stay on the open health endpoints, over
    HTTPS when TLS is on.
    """

    access_secret: str | None = None
    tls_secret: str | None = None

    def args(self) -> list[str]:
        out: list[str] = []
        if self.access_secret:
            out += ["--access", f"{ACCESS_MOUNT}/access.yaml"]
        if self.tls_secret:
            out += ["--tls-cert", f"{TLS_MOUNT}/tls.crt", "--tls-key", f"{TLS_MOUNT}/tls.key"]
        return out

    def volumes(self) -> list[tuple[str, str, str]]:
        """(volume name, Secret name, mount path) for each Secret in use."""
        out = []
        if self.access_secret:
            out.append(("access", self.access_secret, ACCESS_MOUNT))
        if self.tls_secret:
            out.append(("tls", self.tls_secret, TLS_MOUNT))
        return out

    @property
    def in_use(self) -> bool:
        """Whether any Secret is given (an access policy, a TLS pair or both)."""
        return bool(self.access_secret or self.tls_secret)

    @property
    def probe_scheme(self) -> str:
        return "HTTPS" if self.tls_secret else "HTTP"


@dataclass(frozen=True)
class RegistrySource:
    """Every pod serves its model from one shared registry, so a rollout (``honed rollout start``) spans all
    replicas: each pod's follower reads the same weights and one of them, holding the controller lease, decides.

    ``url`` is a PostgreSQL URL without a password (``postgresql://honed@registry.db:5432/honed``); the password
    comes from ``secret`` (key ``password``) as ``PGPASSWORD``, which libpq reads, so it never appears in a
    manifest. The registry's artifacts are read from the model volume's ``artifacts/`` folder.
    """

    url: str
    secret: str

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise InvalidArgument(f"--registry {self.url!r}: not a URL ({exc})") from None
        if parts.scheme not in REGISTRY_SCHEMES or not parts.hostname:
            raise InvalidArgument(
                f"--registry {self.url!r}: the pods need a registry they all reach, a PostgreSQL URL such as "
                "postgresql://honed@registry.db:5432/honed (a SQLite file cannot be shared between pods)"
            )
        if parts.password is not None:
            raise InvalidArgument(
                "--registry: the URL carries a password; leave it out and put it in the --registry-secret Secret "
                "(key 'password')"
            )
        if not self.secret:
            raise InvalidArgument("--registry needs --registry-secret NAME (a Secret whose key 'password' it uses)")

    @property
    def port(self) -> int:
        """The registry's TCP port, which the pods' egress policy opens."""
        return urlsplit(self.url).port or 5432

    def args(self, placement: Placement) -> list[str]:
        return ["--registry", self.url, "--model", f"{placement.deployment}@production"]

    def env(self, model_mount: str) -> list[dict[str, Any]]:
        return [
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": self.secret, "key": "password"}}},
            {"name": "HONED_ARTIFACTS", "value": f"{model_mount}/{ARTIFACTS_DIR}"},
        ]


def http_port(flag: str, url: str, example: str) -> int:
    """The TCP port of an http(s) URL a pod calls (``flag`` and ``example`` say what was wrong in the error)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"{flag} {url!r}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{flag} {url!r}: give an http(s) URL, e.g. {example}")
    return port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class Tracing:
    """Every pod traces requests with OpenTelemetry and exports spans to ``otlp_endpoint`` (OTLP/HTTP)."""

    otlp_endpoint: str
    sample: float | None = None
    """Share of requests traced when the caller's ``traceparent`` did not decide (None: serve's default, 1)."""

    def __post_init__(self) -> None:
        http_port("--otlp-endpoint", self.otlp_endpoint, "http://otel-collector.monitoring.svc:4318")
        if self.sample is not None and not 0.0 <= self.sample <= 1.0:
            raise InvalidArgument(f"--trace-sample must be within 0..1, got {self.sample:g}")

    @property
    def port(self) -> int:
        """The receiver's TCP port, which the pods' egress policy opens."""
        return http_port("--otlp-endpoint", self.otlp_endpoint, "")

    def args(self) -> list[str]:
        sample = [] if self.sample is None else ["--trace-sample", f"{self.sample:g}"]
        return ["--otlp-endpoint", self.otlp_endpoint, *sample]


@dataclass(frozen=True)
class Links:
    """What the serving pods reach outside themselves: the shared registry and the trace receiver."""

    registry: RegistrySource | None = None
    tracing: Tracing | None = None

    def env(self, model_mount: str) -> list[dict[str, Any]]:
        return self.registry.env(model_mount) if self.registry is not None else []

    def egress_ports(self) -> list[int]:
        """The TCP ports the pods' egress policy opens (none: no egress policy is written)."""
        return sorted({link.port for link in (self.registry, self.tracing) if link is not None})


@dataclass(frozen=True)
class Pod:
    """What every serving pod of a placement is given, whatever wraps it (a Deployment or a KServe runtime): its
    image, the Secrets it mounts and what it reaches outside itself."""

    image: str
    secrets: ServingSecrets = field(default_factory=ServingSecrets)
    links: Links = field(default_factory=Links)


def serve_args(
    placement: Placement,
    model_path: str,
    secrets: ServingSecrets | None = None,
    links: Links | None = None,
) -> list[str]:
    """Arguments after the ``honed`` entry point; sized from the plan (threads, instances, batch), with the
    deployment's p99 SLO as the queue-time bound: a request that has waited that long is late whatever happens
    next, so it is refused (429 + Retry-After) and the client can retry on another replica. With ``registry``
    the model is the registry's ``production`` alias of the deployment's name instead of ``model_path``."""
    return [
        "serve",
        *(links.registry.args(placement) if links is not None and links.registry is not None else [model_path]),
        "--http",
        f"0.0.0.0:{HTTP_PORT}",
        "--grpc",
        f"0.0.0.0:{GRPC_PORT}",
        "--metrics",
        f"0.0.0.0:{METRICS_PORT}",
        "--instances",
        str(placement.instances),
        "--threads",
        str(placement.threads),
        "--max-batch-size",
        str(placement.batch),
        "--max-queue-time-ms",
        f"{placement.slo_p99_ms:g}",
        *(secrets.args() if secrets is not None else []),
        *(links.tracing.args() if links is not None and links.tracing is not None else []),
    ]
