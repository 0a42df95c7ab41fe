"""``honed plan`` (placement, replicas and why) and ``honed plan simulate`` (policies over load traces)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from honed.cli.common import console, err_console, print_json
from honed.errors import HonedError, InvalidArgument

if TYPE_CHECKING:
    from honed.plan.document import Plan
    from honed.plan.live_anomaly import AnomalyReport

COMMANDS = {
    "plan": "Place models on node pools from measured profiles; simulate autoscaling policies.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def require_plan_extra() -> None:
    """The planning libraries are an extra; say how to get them instead of failing on an import."""
    import importlib.util

    missing = [m for m in ("pulp", "statsmodels", "matplotlib", "yaml") if importlib.util.find_spec(m) is None]
    if missing:
        raise HonedError(f"this command needs {', '.join(missing)}; install them with: pip install 'honed[plan]'")


def register(app: typer.Typer) -> None:
    plan_app = typer.Typer(
        help=COMMANDS["plan"],
        invoke_without_command=True,
        no_args_is_help=False,
    )

    @plan_app.callback(invoke_without_command=True)
    def plan(
        ctx: typer.Context,
        fleet: Path | None = typer.Option(None, "--fleet", help="fleet.yaml: node pools."),
        deployments: Path | None = typer.Option(None, "--deployments", help="deployments.yaml: what must run."),
        out: Path = typer.Option(Path("plan.json"), "--out", "-o", help="Where to write the plan."),
        time_limit: float = typer.Option(10.0, "--time-limit", help="Solver time limit, seconds."),
        as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON instead of a table."),
        prometheus: str | None = typer.Option(
            None, "--prometheus", help="Prometheus URL: refine the plan with what the serving fleet showed."
        ),
        since: str = typer.Option("24h", "--since", help="With --prometheus: how far back to read (90s, 30m, 24h)."),
        step: str | None = typer.Option(None, "--step", help="With --prometheus: sample spacing (default: >= 15s)."),
        margin: float = typer.Option(
            0.5, "--margin", help="With --prometheus: flag a profile figure production misses by more than this."
        ),
    ) -> None:
        """Decide where each deployment runs and with how many replicas; explain every decision."""
        if ctx.invoked_subcommand is not None:
            return
        require_plan_extra()
        if fleet is None or deployments is None:
            raise InvalidArgument("honed plan needs --fleet FLEET.yaml and --deployments DEPLOYMENTS.yaml")
        if time_limit <= 0:
            raise InvalidArgument("--time-limit must be > 0")
        from honed.plan import plan_files
        from honed.plan.document import write_plan

        if prometheus is not None:
            from honed.plan.live import live_plan
            from honed.plan.prometheus import PrometheusReader, parse_duration

            result = live_plan(
                fleet,
                deployments,
                PrometheusReader(prometheus, parse_duration(step, "--step") if step is not None else None),
                since_s=parse_duration(since),
                margin=margin,
                time_limit_s=time_limit,
            )
        else:
            result = plan_files(fleet, deployments, time_limit_s=time_limit)
        write_plan(result, out)
        if as_json:
            print_json(result.to_dict())
            return
        _print_plan(result, out)

    @plan_app.command("simulate")
    def simulate_cmd(
        plan_path: Path = typer.Option(..., "--plan", help="plan.json from honed plan."),
        trace: str = typer.Option(
            "diurnal-burst", "--trace", help="diurnal, burst, ramp, spike, diurnal-burst, or a CSV of time,requests/s."
        ),
        policy: str = typer.Option("hpa,predictive", "--policy", help="Comma-separated: hpa, predictive, static."),
        out: Path = typer.Option(Path("sim"), "--out", "-o", help="Folder for summary.json and charts."),
        seed: int = typer.Option(0, "--seed", help="Seed of the built-in trace generators."),
        days: float = typer.Option(3.0, "--days", help="Length of a built-in trace, days."),
        warmup_days: float = typer.Option(0.0, "--warmup-days", help="Simulated but not counted in the summary."),
        deployment: list[str] = typer.Option([], "--deployment", "-d", help="Only these deployments (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Replay a load trace through the planned replicas under each autoscaling policy."""
        require_plan_extra()
        from honed.plan import read_plan, simulate_plan

        if days <= 0 or warmup_days < 0 or warmup_days >= days:
            raise InvalidArgument("need --days > 0 and 0 <= --warmup-days < --days")
        summary = simulate_plan(
            read_plan(plan_path),
            trace=trace,
            policies=[p.strip() for p in policy.split(",") if p.strip()],
            out=out,
            seed=seed,
            days=days,
            warmup_s=warmup_days * 86400.0,
            deployments=deployment,
        )
        if as_json:
            print_json(summary.to_dict())
            return
        from rich.table import Table

        for name, d in summary.deployments.items():
            table = Table(title=f"{name} ({d.trace.name}, profile {d.profile_source})")
            for col in ("policy", "SLO-violation min", "replica-h", "cost", "mean slack ms", "max p99 ms", "anomalies"):
                table.add_column(col)
            for pol, s in d.policies.items():
                table.add_row(
                    pol,
                    str(s.slo_violation_minutes),
                    f"{s.replica_hours:.2f}",
                    f"{s.cost:.2f}",
                    f"{s.mean_slack_ms:.1f}",
                    f"{s.max_p99_ms:.1f}",
                    "-" if s.anomalies is None else str(s.anomalies),
                )
            console.print(table)
            console.print(f"chart: {d.chart}")
        console.print(f"summary: {out / 'summary.json'}")

    @plan_app.command("forecast-server")
    def forecast_server_cmd(
        plan_path: Path = typer.Option(..., "--plan", help="plan.json from honed plan."),
        history: Path | None = typer.Option(
            None, "--history", help="Load history CSV (time, requests/s) of the one predictive deployment."
        ),
        history_dir: Path | None = typer.Option(
            None, "--history-dir", help="Folder holding <deployment>.csv per predictive deployment."
        ),
        deployment: list[str] = typer.Option([], "--deployment", "-d", help="Only these deployments (repeatable)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in a pod)."),
        port: int = typer.Option(8080, "--port", help="Port to listen on."),
        prometheus: str | None = typer.Option(
            None, "--prometheus", help="Prometheus URL: continue each history with the live request rate."
        ),
        since: str = typer.Option("24h", "--since", help="With --prometheus: how much live history to read."),
        step: str | None = typer.Option(None, "--step", help="With --prometheus: sample spacing (default: >= 15s)."),
        token_file: Path | None = typer.Option(
            None, "--token-file", help="File holding the bearer token callers must send (else $HONED_FORECAST_TOKEN)."
        ),
        insecure_no_auth: bool = typer.Option(
            False, "--insecure-no-auth", help="Answer every caller without a token (say it out loud)."
        ),
        timeout: float = typer.Option(10.0, "--timeout", help="Seconds a client has to send its request head."),
    ) -> None:
        """Serve the predictive replica count as JSON for KEDA's metrics-api trigger: GET /forecast/NAME."""
        require_plan_extra()
        from honed.deploy.forecast_server import TOKEN_ENV, ForecastService, make_server, read_token
        from honed.plan import read_plan
        from honed.plan.prometheus import PrometheusReader, parse_duration

        if history is not None and history_dir is not None:
            raise InvalidArgument("give --history or --history-dir, not both")
        token = read_token(token_file)
        if token is not None and insecure_no_auth:
            raise InvalidArgument(
                "give a bearer token (--token-file or $HONED_FORECAST_TOKEN) or --insecure-no-auth, not both"
            )
        if token is None and not insecure_no_auth:
            raise InvalidArgument(
                f"the forecast server needs a bearer token: --token-file PATH or ${TOKEN_ENV}; "
                "or --insecure-no-auth to answer anyone"
            )
        service = ForecastService.from_plan(
            read_plan(plan_path),
            history=history,
            history_dir=history_dir,
            deployments=deployment or None,
            prometheus=(
                PrometheusReader(prometheus, parse_duration(step, "--step") if step is not None else None)
                if prometheus is not None
                else None
            ),
            since_s=parse_duration(since),
        )
        server = make_server(service, host, port, token=token, timeout_s=timeout)
        if token is None:
            err_console.print("warning: --insecure-no-auth: the forecast server answers every caller without a token")
        bound_port = server.server_address[1]
        for name in service.history:
            console.print(f"http://{host}:{bound_port}/forecast/{name}", highlight=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    @plan_app.command("anomalies")
    def anomalies_cmd(
        prometheus: str = typer.Option(..., "--prometheus", help="Prometheus URL scraping honed serve."),
        since: str = typer.Option("24h", "--since", help="How far back to look (90s, 30m, 24h, 7d)."),
        until: str | None = typer.Option(None, "--until", help="End of the window: Unix seconds or ISO 8601 (now)."),
        step: str | None = typer.Option(None, "--step", help="Sample spacing (default: the window / 1500)."),
        season: str = typer.Option("24h", "--season", help="The load's season; removed once two are in view."),
        window: int = typer.Option(60, "--window", help="Trailing points each sample is judged against."),
        model: list[str] = typer.Option([], "--model", "-m", help="Only these models (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Report what deviated in request rate, error ratio and p99, per model: when and by how much."""
        require_plan_extra()
        from honed.plan.live_anomaly import live_anomalies
        from honed.plan.prometheus import PrometheusReader, parse_duration, parse_time

        if window < 10:
            raise InvalidArgument("--window must be >= 10 points")
        report = live_anomalies(
            PrometheusReader(prometheus, parse_duration(step, "--step") if step is not None else None),
            since_s=parse_duration(since),
            season_s=parse_duration(season, "--season"),
            window=window,
            models=model,
            until=parse_time(until) if until is not None else None,
        )
        if as_json:
            print_json(report.to_dict())
            return
        _print_anomalies(report)

    app.add_typer(plan_app, name="plan")


def _print_plan(plan: Plan, out: Path) -> None:
    from rich.table import Table

    table = Table(title="placements")
    for col in ("deployment", "pool", "replicas", "threads", "batch", "instances", "p99 ms", "$/h", "profile"):
        table.add_column(col)
    for p in plan.placements:
        table.add_row(
            p.deployment,
            p.pool,
            str(p.replicas),
            str(p.threads),
            str(p.batch),
            str(p.instances),
            f"{p.expected_p99_ms:.1f} / {p.slo_p99_ms:g}",
            f"{p.cost_per_hour:.2f}",
            p.profile_source,
        )
    console.print(table)
    for p in plan.placements:
        console.print(f"[bold]{p.deployment}[/bold]")
        for reason in p.reasons:
            console.print(f"  - {reason}", highlight=False)
        if p.live is not None:
            seen = ", ".join(
                f"{f.name} {f.observed:.4g} (plan {f.measured:.4g}{', contradicts' if f.contradicts else ''})"
                for f in p.live.figures
                if f.observed is not None and f.measured is not None
            )
            console.print(f"  observed in production: {seen or 'nothing'}", highlight=False)
    for u in plan.unplaced:
        console.print(f"[bold red]unplaced[/bold red] {u.deployment} ({u.priority}): {u.reason}", highlight=False)
    console.print(f"plan: {out} (total ${plan.total_cost_per_hour:.2f}/h, solver {plan.solver.status})")


def _print_anomalies(report: AnomalyReport) -> None:
    from datetime import UTC, datetime

    from rich.table import Table

    def when(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

    table = Table(title=f"anomalies over the last {report.since_s:g} s (step {report.step_s:g} s)")
    for col in ("series", "model", "from", "to", "value", "baseline", "change", "modified z"):
        table.add_column(col)
    for a in report.anomalies:
        d = a.to_dict()
        table.add_row(
            a.series,
            f"{a.model}/{a.version}",
            when(a.start),
            when(a.end),
            f"{a.value:.4g} {a.unit}",
            f"{a.baseline:.4g}",
            "-" if d["change"] is None else f"{d['change']:+.0%}",
            "inf" if d["modified_z"] is None else f"{d['modified_z']:.1f}",
        )
    console.print(table)
    n = len(report.anomalies)
    console.print(f"{n} {'anomaly' if n == 1 else 'anomalies'} in {len(report.checked)} series", highlight=False)
