"""``honed deploy k8s``: Kubernetes (or KServe) manifests, Dockerfiles and a Grafana dashboard from a plan."""

from __future__ import annotations

from pathlib import Path

import typer

from honed.cli.common import console, err_console, otlp_endpoint_of

COMMANDS = {
    "deploy": "Write deployment artifacts from a plan; build the serving image.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def register(app: typer.Typer) -> None:
    deploy_app = typer.Typer(help=COMMANDS["deploy"], no_args_is_help=True)

    @deploy_app.command("k8s")
    def k8s_cmd(
        plan_path: Path = typer.Option(..., "--plan", help="plan.json from honed plan."),
        out: Path = typer.Option(Path("manifests"), "--out", "-o", help="Folder to write into."),
        fmt: str = typer.Option("k8s", "--format", help="k8s (Deployment, HPA/KEDA, ...) or kserve (RawDeployment)."),
        image_cpu: str | None = typer.Option(
            None, "--image-cpu", help="Image for CPU placements (default honed:VERSION-cpu)."
        ),
        image_gpu: str | None = typer.Option(
            None, "--image-gpu", help="Image for GPU placements (default honed:VERSION-gpu)."
        ),
        model_claim: str = typer.Option(
            "honed-models", "--model-claim", help="PVC holding <deployment>/model.onnx (k8s)."
        ),
        storage_uri: str = typer.Option(
            "pvc://honed-models", "--storage-uri", help="KServe storageUri prefix (kserve)."
        ),
        metrics_namespace: str = typer.Option(
            "monitoring", "--metrics-namespace", help="Namespace allowed to scrape /metrics."
        ),
        image_forecast: str | None = typer.Option(
            None, "--image-forecast", help="Forecast server image (default honed:VERSION-forecast; predictive plans)."
        ),
        history_claim: str = typer.Option(
            "honed-load-history", "--history-claim", help="PVC holding <deployment>.csv load histories (predictive)."
        ),
        keda_namespace: str = typer.Option(
            "keda", "--keda-namespace", help="Namespace of the KEDA operator, allowed to read the forecast server."
        ),
        access_secret: str | None = typer.Option(
            None, "--access-secret", help="Secret holding access.yaml: every pod serves with --access (k8s)."
        ),
        tls_secret: str | None = typer.Option(
            None, "--tls-secret", help="kubernetes.io/tls Secret: every pod serves REST and gRPC over TLS (k8s)."
        ),
        insecure_no_auth: bool = typer.Option(
            False,
            "--insecure-no-auth",
            help="Serve without an access policy: anyone the NetworkPolicy admits may call every endpoint.",
        ),
        registry: str | None = typer.Option(
            None,
            "--registry",
            help="PostgreSQL registry URL the pods reach, without a password: every pod serves NAME@production "
            "from it, so a rollout spans all replicas (k8s).",
        ),
        registry_secret: str | None = typer.Option(
            None, "--registry-secret", help="Secret whose key 'password' is the registry's (PGPASSWORD in the pods)."
        ),
        otlp_endpoint: str | None = typer.Option(
            None, "--otlp-endpoint", help="OTLP/HTTP receiver every serving pod exports request spans to."
        ),
        trace_sample: float | None = typer.Option(
            None, "--trace-sample", help="With --otlp-endpoint: share of requests traced, 0..1 (serve's default 1)."
        ),
        prometheus: str | None = typer.Option(
            None,
            "--prometheus",
            help="Prometheus the forecast server continues load histories from (default: the one the plan recorded).",
        ),
        slo_objective: float = typer.Option(
            0.999, "--slo-objective", help="Availability objective of the SLO burn-rate alerts (honed-alerts.yaml)."
        ),
    ) -> None:
        """Write manifests for every placement of the plan; then: kubectl apply -f OUT/."""
        # The plan is read through its own dependency-free document module: deploying needs no planning extras.
        from honed.deploy import DeployOptions, write
        from honed.deploy.serving import RegistrySource, ServingSecrets, Tracing
        from honed.errors import InvalidArgument
        from honed.plan.document import read_plan

        if registry_secret is not None and registry is None:
            raise InvalidArgument("--registry-secret needs --registry URL")
        endpoint = otlp_endpoint_of(otlp_endpoint, trace_sample)
        options = DeployOptions(
            fmt=fmt,
            image_cpu=image_cpu,
            image_gpu=image_gpu,
            model_claim=model_claim,
            storage_uri_prefix=storage_uri,
            metrics_namespace=metrics_namespace or None,
            image_forecast=image_forecast,
            history_claim=history_claim,
            keda_namespace=keda_namespace,
            secrets=ServingSecrets(access_secret, tls_secret),
            insecure_no_auth=insecure_no_auth,
            registry=RegistrySource(registry, registry_secret or "") if registry is not None else None,
            tracing=None if endpoint is None else Tracing(endpoint, trace_sample),
            prometheus=prometheus,
            slo_objective=slo_objective,
        )
        written = write(read_plan(plan_path), out, options)
        if insecure_no_auth:
            err_console.print(
                "warning: --insecure-no-auth: the pods serve without authentication; every namespace the "
                "NetworkPolicy admits (the monitoring one included) may infer, load and unload models",
                highlight=False,
                soft_wrap=True,
            )
        for path in written:
            console.print(str(path), highlight=False)
        console.print(f"apply with: kubectl apply -f {out}/  (extras/ holds Dockerfiles and the Grafana dashboard)")

    @deploy_app.command("image")
    def image_cmd(
        base: str = typer.Option(..., "--base", help="Local base image with python3 and its venv module."),
        tag: str = typer.Option(..., "--tag", "-t", help="Tag of the image to build, e.g. honed:0.1.0-cpu."),
        wheelhouse: Path | None = typer.Option(
            None, "--wheelhouse", help="Folder of wheels kept between builds (default: a fresh one each build)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Build honed's serving image with Docker on --base; report its size and cold start to ready."""
        from honed.cli.common import print_json
        from honed.deploy.image import build_image

        report = build_image(base, tag, wheelhouse=wheelhouse)
        if as_json:
            print_json(report.to_dict())
            return
        console.print(
            f"built {report.tag} on {report.base}: {report.size_bytes / 1e6:.0f} MB, "
            f"cold start to ready {report.cold_start_s:.2f} s",
            highlight=False,
            soft_wrap=True,
        )

    app.add_typer(deploy_app, name="deploy")
