"""`dora workspace clone` and `dora credits`: a user's own workspaces and budget."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from dora.cli.common import (
    EXIT_USAGE,
    CaCertOpt,
    DebugOpt,
    InsecureOpt,
    ProfileOpt,
    ZoneOpt,
    client_for,
    fail,
    handle_errors,
)

DataOutputOpt = Annotated[
    str | None, typer.Option("-o", "--output", help="json or yaml (default: plain lines)")
]

workspace_app = typer.Typer(
    name="workspace", help="Workspaces: clone one of yours.", no_args_is_help=True
)


def _check_output(output: str | None) -> None:
    if output is not None and output not in ("json", "yaml"):
        raise fail(f"unknown output {output!r}: use json or yaml", EXIT_USAGE)


def _dump(data: dict[str, Any], output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@workspace_app.command("clone")
@handle_errors
def clone_cmd(
    name: Annotated[str, typer.Argument(metavar="NEW", help="the new workspace is SRC.NEW")],
    source: Annotated[
        str | None,
        typer.Option("-g", "--workspace", help="workspace to clone (default: your own)"),
    ] = None,
    zone: ZoneOpt = None,
    output: DataOutputOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Make a new, empty workspace SRC.NEW where you have the same rights as in SRC.

    You get copies of the grants you hold on SRC itself (not those on every
    workspace), pointed at the new one; nothing else changes. The name must be new:
    an existing workspace is never joined. Needs the Clone right on Workspace in SRC.

    Examples:

      dora workspace clone experiment-2

      dora workspace clone exp -g amedeo.setti -z dora-cluster-1

      dora apply -f job.yaml -g amedeo.setti.experiment-2
    """
    _check_output(output)
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        out = dora.clone_workspace(name, source=source, zone=zone)
    if output:
        _dump(out.model_dump(mode="json"), output)
        return
    typer.echo(f"workspace/{out.workspace} created from {out.source}")
    for g in out.grants:
        typer.echo(f"granted  {g.role} on {g.kind} in zone {g.zone}, workspace {g.workspace}")
    if not out.grants:
        typer.echo("no grants copied: you hold none on the source workspace itself")


def _number(value: float | None, missing: str = "-") -> str:
    if value is None:
        return missing
    return f"{value:.2f}".rstrip("0").rstrip(".")


@handle_errors
def credits_cmd(
    zone: ZoneOpt = None,
    user: Annotated[str | None, typer.Option("--user", help="another user's (admin)")] = None,
    output: DataOutputOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show your weekly credit budget in a zone, what you spent and what is left.

    GPU time costs credits (see `dora get rc`); the credit checker counts them. Until
    it has, the amounts are 0. No budget for the zone means unlimited.

    Examples:

      dora credits

      dora credits -z dora-cluster-1 -o json

      dora credits --user amedeo.setti
    """
    _check_output(output)
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        out = dora.credits(zone=zone, user=user)
    if output:
        _dump(out.model_dump(mode="json"), output)
        return
    updated = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(out.updated_at))
        if out.updated_at is not None
        else "never"
    )
    rows = [
        ("user", out.user),
        ("zone", out.zone),
        ("weekly limit", _number(out.weekly_limit, "unlimited")),
        ("weekly used", _number(out.weekly_used)),
        ("remaining", _number(out.remaining, "unlimited")),
        ("total used", _number(out.total_used)),
        ("updated", updated),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        typer.echo(f"{label.ljust(width)}  {value}")


def register(app: typer.Typer) -> None:
    app.add_typer(workspace_app)
    app.command("credits")(credits_cmd)
