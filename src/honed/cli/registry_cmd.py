"""``honed registry ...`` and ``honed audit ...`` (also ``honed registry audit ...``): thin commands over
:mod:`honed.registry`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from honed.cli.common import EXIT_FAILURE, console, err_console, print_json, say
from honed.cli.options import Actor, JsonFlag, RegistryUrl, with_flags
from honed.errors import InvalidArgument
from honed.jsonio import read_object, write_json
from honed.registry import (
    AuditEntry,
    AuditHead,
    ModelVersion,
    Registry,
    audit_key,
    create_key,
    db,
    default_actor,
    open_registry,
)

COMMANDS = {
    "registry": "Model versions, aliases, labels and lineage.",
    "audit": "The append-only audit log: its hash chain, its key (HMAC) and signed heads.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""

AuditKeyFile = Annotated[
    Path | None,
    typer.Option(
        "--audit-key-file",
        "--key-file",
        envvar=audit_key.ENV,
        help="The audit key file (made by `honed audit key`): MACs new audit entries; a keyed log needs it.",
        show_default=False,
    ),
]
"""``--audit-key-file`` of every command that writes to the registry (and of ``honed rollout``)."""
RefArg = Annotated[str, typer.Argument(help="name, name:VERSION or name@ALIAS.")]


@dataclass(frozen=True)
class Reading:
    """The flags of a command that reads the registry: where it is, and ``--json``."""

    registry: RegistryUrl = None
    as_json: JsonFlag = False

    def open(self) -> Registry:
        return open_registry(self.registry)

    def say(self, data: Any, text: str, *, highlight: bool | None = None, soft_wrap: bool = False) -> None:
        say(self.as_json, data, text, highlight=highlight, soft_wrap=soft_wrap)


@dataclass(frozen=True)
class Keyed(Reading):
    """The flags of a command that checks or extends the audit log: the registry's, and the audit key."""

    audit_key_file: AuditKeyFile = None

    def open(self) -> Registry:
        return open_registry(self.registry, audit_key_file=self.audit_key_file)


@dataclass(frozen=True)
class Change(Keyed):
    """The flags of a command that changes the registry: the audit key's, and who makes the change."""

    actor: Actor = None

    @property
    def who(self) -> str:
        return self.actor or default_actor()


def _read_json(path: Path | None, what: str) -> dict[str, Any] | None:
    return None if path is None else read_object(path, what)


def _read_head(path: Path) -> AuditHead:
    return AuditHead.from_dict(_read_json(path, "audit head"), f"the head file {path}")


def _short(sha: str) -> str:
    return sha[:12]


def _version_table(versions: list[ModelVersion]) -> Table:
    table = Table("ref", "sha256", "size", "created", "by", "parent", "aliases", "residency", "tags")
    for v in versions:
        table.add_row(
            v.ref + (" (deleted)" if v.deleted else ""),
            _short(v.sha256),
            str(v.size),
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            v.created_by,
            v.parent or "-",
            ", ".join(v.aliases) or "-",
            ", ".join(v.residency) or "unlabelled",
            ", ".join(v.tags) or "-",
        )
    return table


def _show_version(v: ModelVersion) -> None:
    console.print(f"[bold]{v.ref}[/bold]" + (" [red](deleted)[/red]" if v.deleted else ""))
    for key, value in (
        ("sha256", v.sha256),
        ("size", f"{v.size} bytes"),
        ("format", v.format),
        ("created", f"{v.created_at.isoformat()} by {v.created_by}"),
        ("parent", v.parent or "-"),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("residency", ", ".join(v.residency) or "unlabelled (refused by servers that enforce residency)"),
        ("tags", ", ".join(v.tags) or "-"),
    ):
        console.print(f"  {key:<10} {value}", highlight=False)
    for key, blob in (("recipe", v.recipe), ("profile", v.profile)):
        if blob:
            console.print(f"  {key}:", highlight=False)
            console.print_json(json.dumps(blob))


def _print_entries(entries: list[AuditEntry]) -> None:
    for e in entries:
        details = json.dumps(e.details, sort_keys=True, separators=(",", ":"))
        console.print(
            f"#{e.seq} {e.at} {e.actor} {e.action} {e.target} {details} {_short(e.hash)}",
            highlight=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    reg_app = typer.Typer(help=COMMANDS["registry"], no_args_is_help=True)
    audit_app = typer.Typer(help=COMMANDS["audit"], no_args_is_help=True)
    app.add_typer(reg_app, name="registry")
    app.add_typer(audit_app, name="audit")
    reg_app.add_typer(audit_app, name="audit")

    @reg_app.command("register")
    @with_flags(Change)
    def register_cmd(
        model: Path = typer.Argument(
            ..., help="The .onnx file, an OpenVINO IR .xml (with its .bin), or a folder holding either."
        ),
        name: str = typer.Argument(..., help="Model name, e.g. fraud-scorer."),
        parent: str | None = typer.Option(None, "--parent", help="The version this one derives from (name:V)."),
        recipe: Path | None = typer.Option(None, "--recipe", help="JSON file: the recipe that produced it."),
        profile: Path | None = typer.Option(None, "--profile", help="JSON file: accuracy/latency per hardware."),
        tag: list[str] = typer.Option([], "--tag", help="A tag (repeatable)."),
        residency: list[str] = typer.Option([], "--residency", help="A jurisdiction it may run in (repeatable)."),
        *,
        flags: Change,
    ) -> None:
        """Register a model file as the next version of NAME (the same file again returns its version)."""
        with flags.open() as reg:
            version, created = reg.register_with_status(
                model,
                name,
                actor=flags.who,
                parent=parent,
                recipe=_read_json(recipe, "recipe"),
                profile=_read_json(profile, "profile"),
                tags=tag,
                residency=residency,
            )
        if flags.as_json:
            print_json({**version.to_dict(), "created": created})
        elif created:
            console.print(f"registered {version.ref} (sha256 {_short(version.sha256)}, {version.size} bytes)")
        else:
            console.print(f"already registered as {version.ref} (same sha256); no new version")

    @reg_app.command("list")
    @with_flags(Reading)
    def list_cmd(
        name: str | None = typer.Argument(None, help="A model name: list its versions."),
        all_versions: bool = typer.Option(False, "--all", help="Include deleted versions."),
        *,
        flags: Reading,
    ) -> None:
        """List models, or the versions of one model."""
        with flags.open() as reg:
            if name is None:
                models = reg.models()
                if flags.as_json:
                    print_json([m.to_dict() for m in models])
                    return
                table = Table("name", "latest", "live versions", "aliases")
                for m in models:
                    aliases = ", ".join(f"{a}={v}" for a, v in sorted(m.aliases.items())) or "-"
                    table.add_row(m.name, str(m.latest_version), str(m.live_versions), aliases)
                console.print(table if models else "the registry is empty")
                return
            versions = reg.versions(name, include_deleted=all_versions)
        if flags.as_json:
            print_json([v.to_dict() for v in versions])
        else:
            console.print(_version_table(versions))

    @reg_app.command("show")
    @with_flags(Reading)
    def show_cmd(ref: RefArg, *, flags: Reading) -> None:
        """Show one version, and the serving history of the model's aliases."""
        with flags.open() as reg:
            version = reg.resolve(ref)
            history = reg.alias_history(version.name)
        if flags.as_json:
            print_json({**version.to_dict(), "serving_history": [h.to_dict() for h in history]})
            return
        _show_version(version)
        if history:
            table = Table("alias", "version", "from", "until", "set by")
            for h in history:
                until = "now" if h.end is None else h.end.isoformat()
                table.add_row(h.alias, str(h.version), h.start.isoformat(), until, h.started_by)
            console.print("serving history:")
            console.print(table)

    @reg_app.command("lineage")
    @with_flags(Reading)
    def lineage_cmd(ref: RefArg, *, flags: Reading) -> None:
        """Where a version came from (parents, with their recipes) and what was derived from it."""
        with flags.open() as reg:
            lineage = reg.lineage(ref)
        if flags.as_json:
            print_json(lineage.to_dict())
            return
        chain = [lineage.version, *lineage.ancestors]
        for depth, v in enumerate(chain):
            recipe = f"  recipe: {json.dumps(v.recipe, sort_keys=True)}" if v.recipe else ""
            arrow = "" if depth == 0 else "└─ derived from "
            gone = " (deleted)" if v.deleted else ""
            console.print(f"{'   ' * max(depth - 1, 0)}{arrow}{v.ref}{gone} sha256 {_short(v.sha256)}{recipe}")
        if lineage.descendants:
            console.print("derived versions: " + ", ".join(f"{d.ref} (from {d.parent})" for d in lineage.descendants))

    @reg_app.command("alias")
    @with_flags(Change)
    def alias_cmd(
        name: str = typer.Argument(..., help="Model name."),
        alias: str = typer.Argument(..., help="Alias, e.g. production or canary."),
        version: str | None = typer.Argument(None, help="Version number to point the alias at."),
        remove: bool = typer.Option(False, "--remove", help="Remove the alias instead."),
        *,
        flags: Change,
    ) -> None:
        """Point NAME@ALIAS at VERSION (atomically), show where it points, or --remove it."""
        with flags.open() as reg:
            if remove:
                if version is not None:
                    raise InvalidArgument("give either a VERSION or --remove, not both")
                reg.remove_alias(name, alias, actor=flags.who)
                flags.say({"name": name, "alias": alias, "version": None}, f"removed {name}@{alias}")
                return
            if version is None:
                target = reg.resolve(f"{name}@{alias}")
            else:
                target = reg.set_alias(name, alias, version, actor=flags.who)
        flags.say({"name": name, "alias": alias, "version": target.version}, f"{name}@{alias} -> {target.ref}")

    @reg_app.command("label")
    @with_flags(Change)
    def label_cmd(
        ref: str = typer.Argument(..., help="name:VERSION (or name@ALIAS)."),
        residency: list[str] = typer.Option(
            [], "--residency", help="Jurisdictions it may run in (repeatable; replaces the current set)."
        ),
        clear_residency: bool = typer.Option(False, "--clear-residency", help="Remove all residency labels."),
        tag: list[str] = typer.Option([], "--tag", help="Add a tag (repeatable)."),
        untag: list[str] = typer.Option([], "--untag", help="Remove a tag (repeatable)."),
        *,
        flags: Change,
    ) -> None:
        """Change a version's residency labels and tags (audited; the version itself never changes)."""
        if residency and clear_residency:
            raise InvalidArgument("give --residency or --clear-residency, not both")
        if not (residency or clear_residency or tag or untag):
            raise InvalidArgument("nothing to change: give --residency, --clear-residency, --tag or --untag")
        new_residency: list[str] | None = [] if clear_residency else (residency or None)
        with flags.open() as reg:
            v = reg.label(ref, actor=flags.who, residency=new_residency, add_tags=tag, remove_tags=untag)
        flags.say(
            v.to_dict(),
            f"{v.ref}: residency {', '.join(v.residency) or 'unlabelled'}; tags {', '.join(v.tags) or '-'}",
        )

    @reg_app.command("delete")
    @with_flags(Change)
    def delete_cmd(
        ref: str = typer.Argument(..., help="name:VERSION to delete."),
        *,
        flags: Change,
    ) -> None:
        """Delete one version: it stops resolving; its number, record and lineage are kept."""
        with flags.open() as reg:
            v = reg.delete(ref, actor=flags.who)
        flags.say(v.to_dict(), f"deleted {v.ref}")

    @audit_app.command("verify")
    @with_flags(Keyed)
    def verify_cmd(
        anchor: list[str] = typer.Option(
            [], "--anchor", help="SEQ:HASH recorded earlier (e.g. from --json) that must still hold (repeatable)."
        ),
        head: Path | None = typer.Option(
            None, "--head", help="A head file from `honed audit export-head`: the log must still reach it."
        ),
        *,
        flags: Keyed,
    ) -> None:
        """Check the whole chain (MACs too, given the key); name every edited, removed or reordered entry (exit 1)."""
        anchors: list[tuple[int, str]] = []
        for a in anchor:
            seq, _, digest = a.partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise InvalidArgument(f"invalid --anchor {a!r}: use SEQ:HASH with the 64-hex-digit entry hash")
            anchors.append((int(seq), digest.lower()))
        exported = None if head is None else _read_head(head)
        with flags.open() as reg:
            report = reg.verify_audit(anchors, head=exported)
        if flags.as_json:
            print_json(report.to_dict())
        elif report.ok:
            macs = (
                f"; {report.keyed_entries} MACs checked"
                if report.macs_checked
                else (
                    f"; {report.keyed_entries} MACs NOT checked (give --audit-key-file)" if report.keyed_entries else ""
                )
            )
            against = "" if report.exported_head is None else f"; reaches the exported head #{report.exported_head}"
            console.print(
                f"audit log OK: {report.entries} entries, head #{report.head_seq} {report.head_hash}{macs}{against}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            first = report.first_problem
            if first is not None:
                err_console.print(f"first bad entry: #{first.seq} ({first.kind})", highlight=False)
            for p in report.problems:
                err_console.print(f"[red]TAMPERED[/red] {p.message}", highlight=False, soft_wrap=True)
            err_console.print(f"audit log FAILED verification: {len(report.problems)} problem(s)")
        if not report.ok:
            raise typer.Exit(EXIT_FAILURE)

    @audit_app.command("key")
    def key_cmd(
        out: Path | None = typer.Option(
            None, "--out", help="Where to keep the key; default $HONED_HOME/audit.key.", show_default=False
        ),
        as_json: JsonFlag = False,
    ) -> None:
        """Make the audit key (32 random bytes, mode 0600) if the file is missing, and print its id."""
        path = out or db.honed_home() / "audit.key"
        key, made = create_key(path)
        if as_json:
            print_json({"path": key.path, "key_id": key.id, "created": made})
            return
        what = "made audit key" if made else "audit key already there:"
        console.print(f"{what} {key.id} at {key.path}", highlight=False, soft_wrap=True)
        console.print(
            f"keep it outside the database's host and backups; set {audit_key.ENV}={key.path} "
            "for every honed that writes to the registry",
            highlight=False,
            soft_wrap=True,
        )

    @audit_app.command("export-head")
    @with_flags(Keyed)
    def export_head_cmd(
        out: Path = typer.Option(..., "--out", help="The head file to write (JSON, signed with the audit key)."),
        *,
        flags: Keyed,
    ) -> None:
        """Write the log's last entry, signed with the audit key, to a file kept elsewhere (for verify --head)."""
        with flags.open() as reg:
            signed = reg.export_audit_head()
        write_json(out, signed.to_dict())
        flags.say(
            signed.to_dict(),
            f"exported audit head #{signed.seq} {signed.hash} to {out}",
            highlight=False,
            soft_wrap=True,
        )

    @audit_app.command("log")
    @with_flags(Reading)
    def log_cmd(
        limit: int = typer.Option(50, "--limit", "-n", help="How many of the latest entries."),
        name: str | None = typer.Option(None, "--model", help="Only entries about this model."),
        action: str | None = typer.Option(None, "--action", help="Only this action (register, alias, label ...)."),
        *,
        flags: Reading,
    ) -> None:
        """Show the latest audit entries, oldest first."""
        with flags.open() as reg:
            entries = reg.audit_log(limit=limit, name=name, action=action)
        if flags.as_json:
            print_json([e.to_dict() for e in entries])
        else:
            if entries:
                _print_entries(entries)
            else:
                console.print("no audit entries")
