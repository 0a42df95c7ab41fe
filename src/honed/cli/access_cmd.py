"""``honed access``: make bearer tokens and the access-policy entries ``honed serve --access`` reads, and check a
policy file the way the server will read it (before a SIGHUP makes a running server reload it)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from honed.cli.common import console, err_console
from honed.errors import InvalidArgument

COMMANDS = {"access": "Make bearer tokens and access-policy entries for honed serve --access."}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def register(app: typer.Typer) -> None:
    access_app = typer.Typer(help=COMMANDS["access"], no_args_is_help=True)
    app.add_typer(access_app, name="access")

    model_option = typer.Option(
        [], "--model", "-m", help="A model name or pattern it may use, e.g. 'fraud-*' (repeatable)."
    )
    action_option = typer.Option(
        ["infer", "read"], "--action", "-a", help="infer, read, admin or metrics (repeatable; default infer, read)."
    )

    @access_app.command("token")
    def token(
        name: str = typer.Argument(..., help="The principal's name, e.g. fraud-app."),
        model: list[str] = model_option,
        action: list[str] = action_option,
        policy: Path | None = typer.Option(
            None, "--policy", help="Add the principal to this policy file (created when absent) instead of printing it."
        ),
    ) -> None:
        """Make a new random bearer token for NAME; print it once, and the policy entry that holds only its hash."""
        from honed.serve.access import new_token, token_hash

        secret = new_token()
        entry = {"name": name, "token_sha256": token_hash(secret), "models": list(model), "actions": list(action)}
        _add(entry, policy)
        err_console.print("token (shown once; give it to the client as 'Authorization: Bearer <token>'):")
        typer.echo(secret, err=policy is None)

    @access_app.command("jwt")
    def jwt_principal(
        name: str = typer.Argument(..., help="The value of the principal claim (sub by default) in its JWTs."),
        model: list[str] = model_option,
        action: list[str] = action_option,
        policy: Path = typer.Option(..., "--policy", help="Add the principal to this policy file (with 'oidc')."),
    ) -> None:
        """Add a principal that signs in with JWTs from the policy's identity provider (no honed token)."""
        _add({"name": name, "models": list(model), "actions": list(action)}, policy)

    @access_app.command("check")
    def check(
        policy: Path = typer.Argument(..., help="The access policy file honed serve --access reads."),
    ) -> None:
        """Read POLICY as honed serve does (its JWKS too) and summarize it; a mistake exits 2 with the reason."""
        from honed.serve.access import AccessPolicy

        loaded = AccessPolicy.from_file(policy)
        jwt_names = sum(p.token_sha256 is None for p in loaded.principals)
        typer.echo(f"{policy}: {len(loaded.principals)} principal(s), {jwt_names} signing in with a JWT")
        if loaded.oidc is not None:
            s = loaded.oidc.settings
            typer.echo(
                f"oidc: issuer {s.issuer}, audience {', '.join(s.audience)}, {len(loaded.oidc.kids)} key(s) from "
                f"{s.jwks}, principal claim {s.principal_claim!r}, leeway {s.leeway_s:g} s"
            )
        limits = loaded.limits
        if limits.default is not None or limits.principals:
            default = f"{limits.default.rps:g} rps, burst {limits.default.burst:g}" if limits.default else "none"
            typer.echo(f"limits: default {default}; {len(limits.principals)} principal(s) with their own")
        revoked = sorted(loaded.revoked_principals) + sorted(loaded.oidc.revoked_kids if loaded.oidc else ())
        if revoked:
            typer.echo(f"revoked: {', '.join(revoked)}")


def _add(entry: dict[str, Any], policy: Path | None) -> None:
    """Print the policy holding only ``entry``, or add it to ``policy`` (created when absent); either way after the
    checks the server makes. A broken policy file is reported and never overwritten; the rest of it is kept as
    written (its oidc, limits and revoked sections too), and it is replaced in one step, so a server polling it
    never reads half a file."""
    import yaml

    from honed.serve.access import AccessPolicy, read_policy_document

    if policy is None:
        AccessPolicy.from_dict({"principals": [entry]})
        console.print(yaml.safe_dump({"principals": [entry]}, sort_keys=False), end="", markup=False)
        return
    doc: dict[str, Any] = {"principals": []}
    if policy.exists():
        AccessPolicy.from_file(policy)
        doc = read_policy_document(policy)
    doc["principals"].append(entry)
    AccessPolicy.from_dict(doc, base=policy.parent)
    staged = policy.with_name(f".{policy.name}.new")
    try:
        staged.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        staged.replace(policy)
    except OSError as exc:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {policy}: {exc.strerror or exc}") from None
    err_console.print(f"added principal {entry['name']!r} to {policy}")
