"""``honed rollout ...``: start, watch, steer and run a canary rollout kept in the registry."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.table import Table

from honed.cli.common import EXIT_FAILURE, console, parse_int_list, print_json
from honed.cli.options import Reason, with_flags
from honed.cli.registry_cmd import Change, Keyed, Reading
from honed.errors import InvalidArgument
from honed.registry import rollout_policy as policy
from honed.registry.rollouts import PROMOTED, Rollout, Rollouts
from honed.units import parse_duration

COMMANDS = {"rollout": "Canary rollouts: shift traffic step by step, promote or roll back on the figures."}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""

NameArg = Annotated[str, typer.Argument(help="Model name.")]


@dataclass(frozen=True)
class Steering(Change):
    """The flags of a command that changes a rollout: the registry change's, and why."""

    reason: Reason = ""


def _bound(text: str, flag: str) -> float | None:
    """A number, or ``off`` to switch the check off."""
    if text.strip().lower() == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(f"{flag} takes a number or 'off'; got {text!r}") from None


def _weights(r: Rollout) -> str:
    return ", ".join(f"v{v} {w}%" for v, w in r.weights.items())


def _show(r: Rollout) -> None:
    s = r.settings
    console.print(
        f"[bold]{r.name}[/bold] v{r.from_version} -> v{r.to_version}: {r.status.replace('_', ' ')}, "
        f"step {r.step + 1}/{len(s.steps)} ({_weights(r)}), failed intervals {r.failures}/{s.threshold}",
        highlight=False,
    )
    console.print(f"  started {r.started_at.isoformat()} by {r.started_by}; reason: {r.reason or '-'}", highlight=False)
    if not r.verdicts:
        console.print("  no verdicts yet")
        return
    table = Table("at", "weight", "verdict", "action", "canary req", "errors", "p99 ratio", "pairs", "agreement")
    for v in r.verdicts:
        f = v.figures
        ratio = "-" if f.get("p99_ratio") is None else f"{f['p99_ratio']:.2f}"
        agreement = "-" if f.get("agreement") is None else f"{f['agreement']:.4f}"
        table.add_row(
            v.at.strftime("%H:%M:%S"),
            f"{v.weight}%",
            v.verdict,
            v.action,
            str(f["candidate"]["requests"]),
            str(f["candidate"]["errors"]),
            ratio,
            str(f["pairs"]),
            agreement,
        )
    console.print(table)
    console.print(f"  last: {'; '.join(r.verdicts[-1].reasons)}", highlight=False)


def _say(r: Rollout, flags: Reading, what: str) -> None:
    flags.say(r.to_dict(), f"{what} the rollout of {r.name} (v{r.from_version} -> v{r.to_version}): {_weights(r)}")


def register(app: typer.Typer) -> None:
    ro_app = typer.Typer(help=COMMANDS["rollout"], no_args_is_help=True)
    app.add_typer(ro_app, name="rollout")

    @ro_app.command("start")
    @with_flags(Steering)
    def start_cmd(
        name: NameArg,
        to: int = typer.Option(..., "--to", help="The candidate version."),
        steps: str = typer.Option("5,25,50,100", "--steps", help="Increasing canary weights in percent."),
        interval: str = typer.Option("60s", "--interval", help="How long each interval observes before deciding."),
        mirror: float = typer.Option(0.1, "--mirror", help="Share of production requests mirrored to the canary."),
        max_error_rate: float = typer.Option(0.01, "--max-error-rate", help="Highest canary error rate."),
        max_p99_ratio: str = typer.Option("1.2", "--max-p99-ratio", help="Highest canary/production p99, or off."),
        min_agreement: str = typer.Option(
            "auto",
            "--min-agreement",
            help="Lowest mirrored agreement, or off; auto: the --min of the optimize run that made one version "
            "from the other, when its --metric is this --agreement, else 0.99.",
        ),
        agreement: str = typer.Option("top1", "--agreement", help="Agreement metric: top1 or cosine."),
        min_requests: int = typer.Option(200, "--min-requests", help="Fewer requests or pairs: inconclusive."),
        deadline: str = typer.Option("30m", "--deadline", help="Roll back if not concluded by then."),
        threshold: int = typer.Option(1, "--threshold", help="Failed intervals before rolling back."),
        require_approval: bool = typer.Option(False, "--require-approval", help="The last step waits for approve."),
        *,
        flags: Steering,
    ) -> None:
        """Start rolling NAME:--to out in place of NAME@production."""
        auto = min_agreement.strip().lower() == "auto"
        settings = policy.RolloutSettings(
            steps=parse_int_list(steps, "--steps"),
            interval_s=parse_duration(interval, "--interval"),
            mirror=mirror,
            max_error_rate=max_error_rate,
            max_p99_ratio=_bound(max_p99_ratio, "--max-p99-ratio"),
            # auto without mirroring: no pairs to agree, so no bound (an explicit one is refused below)
            min_agreement=(policy.RolloutSettings.min_agreement if mirror > 0 else None)
            if auto
            else _bound(min_agreement, "--min-agreement"),
            min_requests=min_requests,
            deadline_s=parse_duration(deadline, "--deadline"),
            threshold=threshold,
            agreement_metric=agreement,
            require_approval=require_approval,
        ).validate()
        with flags.open() as reg:
            started = Rollouts(reg).start(
                name, to, settings, actor=flags.who, reason=flags.reason, agreement_from_optimize=auto
            )
        _say(started, flags, "started")

    @ro_app.command("status")
    @with_flags(Reading)
    def status_cmd(name: NameArg, *, flags: Reading) -> None:
        """The rollout's step, weights, this interval's figures so far and verdict history (the active one, else the
        last)."""
        with flags.open() as reg:
            ro = Rollouts(reg)
            current = ro.get(name)
            so_far = policy.figures(ro.observation(current)) if current.active else None
        if flags.as_json:
            print_json({**current.to_dict(), "current_interval": so_far})
            return
        _show(current)
        if so_far is not None:
            c, p = so_far["candidate"], so_far["production"]
            agreement = "-" if so_far["agreement"] is None else f"{so_far['agreement']:.4f}"
            console.print(
                f"  this interval so far: canary {c['requests']} requests ({c['errors']} errors, "
                f"p99 {c['p99_ms']} ms), production {p['requests']} (p99 {p['p99_ms']} ms), "
                f"{so_far['pairs']} mirrored pairs, agreement {agreement}",
                highlight=False,
            )

    def _steer(verb: str, past: str, summary: str) -> None:
        @ro_app.command(verb, help=summary)
        @with_flags(Steering)
        def steer_cmd(name: NameArg, *, flags: Steering) -> None:
            with flags.open() as reg:
                ro = Rollouts(reg)
                changed = getattr(ro, verb)(name, actor=flags.who, reason=flags.reason)
            _say(changed, flags, past)

    _steer("pause", "paused", "Hold the current weights; no decisions until resume.")
    _steer("resume", "resumed", "Continue a paused rollout; its next interval starts now.")
    _steer("abort", "aborted", "Stop the rollout: all traffic back to production, which never moved.")
    _steer("approve", "approved", "Promote a rollout that passed its last step and waits for approval.")

    @ro_app.command("run")
    @with_flags(Keyed)
    def run_cmd(
        name: NameArg,
        holder: str | None = typer.Option(
            None, "--holder", help="This controller's name for the lease; default rollout@HOST:PID."
        ),
        poll: str = typer.Option("1s", "--poll", help="How often to check whether an interval is due."),
        *,
        flags: Keyed,
    ) -> None:
        """Be the rollout's controller until it ends: decide each interval while holding the lease.

        Exits 0 when the candidate was promoted, 1 when it was rolled back or aborted.
        """
        poll_s = parse_duration(poll, "--poll")
        me = holder or f"rollout@{socket.gethostname()}:{os.getpid()}"
        with flags.open() as reg:
            ro = Rollouts(reg)
            current = ro.get(name)
            if not current.active:
                raise InvalidArgument(f"the last rollout of {name} already ended ({current.status.replace('_', ' ')})")
            try:
                while current.active:
                    decision = ro.tick(name, holder=me)
                    if decision is not None:
                        if flags.as_json:
                            print(json.dumps(decision.to_dict(), default=str), flush=True)
                        else:
                            console.print(
                                f"{decision.verdict} at {decision.figures['weight']}% -> {decision.action}: "
                                + "; ".join(decision.reasons),
                                highlight=False,
                            )
                    current = ro.get(name)
                    if current.active:
                        time.sleep(poll_s)
            finally:
                ro.release_lease(current.id, me)
        if not flags.as_json:
            console.print(f"the rollout of {name} ended: {current.status.replace('_', ' ')}")
        if current.status != PROMOTED:
            raise typer.Exit(EXIT_FAILURE)
