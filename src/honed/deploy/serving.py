"""How a container runs ``honed serve`` for one placement: the one place the serve command line is built."""

from __future__ import annotations

from dataclasses import dataclass

from honed.plan.document import Placement
from honed.serve.contract import GRPC_PORT, HTTP_PORT

ACCESS_MOUNT = "/etc/honed/access"
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


def serve_args(placement: Placement, model_path: str, secrets: ServingSecrets | None = None) -> list[str]:
    """Arguments after the ``honed`` entry point; sized from the plan (threads, instances, batch), with the
    deployment's p99 SLO as the queue-time bound: a request that has waited that long is late whatever happens
    next, so it is refused (429 + Retry-After) and the client can retry on another replica."""
    return [
        "serve",
        model_path,
        "--http",
        f"0.0.0.0:{HTTP_PORT}",
        "--grpc",
        f"0.0.0.0:{GRPC_PORT}",
        "--instances",
        str(placement.instances),
        "--threads",
        str(placement.threads),
        "--max-batch-size",
        str(placement.batch),
        "--max-queue-time-ms",
        f"{placement.slo_p99_ms:g}",
        *(secrets.args() if secrets is not None else []),
    ]
