"""``honed access``: make bearer tokens and the access-policy entries ``honed serve --access`` reads."""

from __future__ import annotations

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

    @access_app.command("token")
    def token(
        name: str = typer.Argument(..., help="The principal's name, e.g. fraud-app."),
        model: list[str] = typer.Option(
            [], "--model", "-m", help="A model name or pattern it may use, e.g. 'fraud-*' (repeatable)."
        ),
        action: list[str] = typer.Option(
            ["infer", "read"], "--action", "-a", help="infer, read, admin or metrics (repeatable; default infer, read)."
        ),
        policy: Path | None = typer.Option(
            None, "--policy", help="Add the principal to this policy file (created when absent) instead of printing it."
        ),
    ) -> None:
        """Make a new random bearer token for NAME; print it once, and the policy entry that holds only its hash."""
        import yaml

        from honed.serve.access import AccessPolicy, new_token, token_hash

        secret = new_token()
        entry = {"name": name, "token_sha256": token_hash(secret), "models": list(model), "actions": list(action)}
        if policy is None:
            AccessPolicy.from_dict({"principals": [entry]})  # the same checks the server makes
            console.print(yaml.safe_dump({"principals": [entry]}, sort_keys=False), end="", markup=False)
        else:
            doc: dict[str, list[dict[str, Any]]] = {"principals": []}
            if policy.exists():
                loaded = AccessPolicy.from_file(policy)  # a broken file is reported, never overwritten
                doc["principals"] = [
                    {
                        "name": p.name,
                        "token_sha256": p.token_sha256,
                        "models": list(p.models),
                        "actions": sorted(p.actions),
                    }
                    for p in loaded.principals
                ]
            doc["principals"].append(entry)
            AccessPolicy.from_dict(doc)
            try:
                policy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            except OSError as exc:
                raise InvalidArgument(f"cannot write {policy}: {exc.strerror or exc}") from None
            err_console.print(f"added principal {name!r} to {policy}")
        err_console.print("token (shown once; give it to the client as 'Authorization: Bearer <token>'):")
        typer.echo(secret, err=policy is None)
