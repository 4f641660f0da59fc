"""`dora token create|list|revoke`."""

from __future__ import annotations

import re
import time
from typing import Annotated

import typer

from dora.cli.common import (
    EXIT_USAGE,
    CaCertOpt,
    DebugOpt,
    InsecureOpt,
    ProfileOpt,
    client_for,
    fail,
    handle_errors,
)

token_app = typer.Typer(
    name="token", help="API tokens: create (printed once), list, revoke.", no_args_is_help=True
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match or int(match.group(1)) == 0:
        raise fail(f"--expires takes a duration like 30m, 12h, 90d (got {text!r})", EXIT_USAGE)
    return int(match.group(1)) * _UNITS[match.group(2)]


@token_app.command("create")
@handle_errors
def create_cmd(
    user: Annotated[str, typer.Argument(help="who the token is for")],
    workspace: Annotated[str, typer.Argument(help="their default workspace")],
    token_id: Annotated[str, typer.Argument(metavar="ID", help="tells a user's tokens apart")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="lifetime, e.g. 12h or 90d (default: none)")
    ] = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Create a token and print it (the only time it is shown).

    Examples:

      dora token create node node 1

      dora token create amedeo.setti amedeo.setti 1 --expires 90d
    """
    ttl = parse_duration(expires) if expires else None
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        out = dora.create_token(user, workspace, token_id, expires_in_s=ttl)
    typer.echo(out.token)


@token_app.command("list")
@handle_errors
def list_cmd(
    user: Annotated[str | None, typer.Option("--user", help="another user's (admin)")] = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List tokens (never the tokens themselves): jti, user, id, expiry.

    Example:

      dora token list --user node
    """
    from dora.cli.tables import align

    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        items = dora.list_tokens(user)
    rows = [
        [
            t.jti,
            t.user,
            t.workspace,
            t.id,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(t.expires_at))
            if t.expires_at
            else "never",
        ]
        for t in items
    ]
    typer.echo(align(["jti", "user", "workspace", "id", "expires"], rows))


@token_app.command("revoke")
@handle_errors
def revoke_cmd(
    jti: Annotated[str, typer.Argument(help="the token's jti, from `dora token list`")],
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Revoke a token: it stops working at once.

    Example:

      dora token revoke 3f2a…
    """
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        out = dora.revoke_token(jti)
    typer.echo(f"token {out.jti} of {out.user} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app)
