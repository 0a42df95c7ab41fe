"""``honed plan`` (placement, replicas and why) and ``honed plan simulate`` (policies over load traces)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from honed.cli.common import console, print_json
from honed.errors import HonedError, InvalidArgument

if TYPE_CHECKING:
    from honed.plan.document import Plan

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
    ) -> None:
        """Serve the predictive replica count as JSON for KEDA's metrics-api trigger: GET /forecast/NAME."""
        require_plan_extra()
        from honed.deploy.forecast_server import ForecastService, make_server
        from honed.plan import read_plan

        if history is not None and history_dir is not None:
            raise InvalidArgument("give --history or --history-dir, not both")
        service = ForecastService.from_plan(
            read_plan(plan_path),
            history=history,
            history_dir=history_dir,
            deployments=deployment or None,
        )
        server = make_server(service, host, port)
        bound_port = server.server_address[1]
        for name in service.history:
            console.print(f"http://{host}:{bound_port}/forecast/{name}", highlight=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

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
    for u in plan.unplaced:
        console.print(f"[bold red]unplaced[/bold red] {u.deployment} ({u.priority}): {u.reason}", highlight=False)
    console.print(f"plan: {out} (total ${plan.total_cost_per_hour:.2f}/h, solver {plan.solver.status})")
