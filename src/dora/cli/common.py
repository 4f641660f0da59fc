"""What every CLI command shares: options, the client for the chosen profile, and
turning errors into one readable line and an exit code."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from dora.cli.config import ConfigError, config_path, load, resolve

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
"""The server refused or the operation failed."""
EXIT_USAGE = 2
"""Bad arguments or configuration."""

ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="profile to use (default: the current one)")
]
WorkspaceOpt = Annotated[
    str | None, typer.Option("-g", "--workspace", help="workspace (default: your own)")
]
ZoneOpt = Annotated[str | None, typer.Option("-z", "--zone", help="zone (default: yours)")]
AllOpt = Annotated[
    bool, typer.Option("-A", "--all-workspaces", help="every workspace you may read")
]
OutputOpt = Annotated[
    str | None, typer.Option("-o", "--output", help="wide, json or yaml (default: a table)")
]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="accept the API's certificate without checking it")
]
CaCertOpt = Annotated[
    str | None, typer.Option("--ca-cert", help="CA bundle that signed the API's certificate")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show the full error")]


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def client_for(profile: str | None, *, insecure: bool = False, ca_cert: str | None = None) -> Any:
    """A `dora.client.Client` for the chosen profile (imported lazily: fast `--help`)."""
    from dora.client import Client

    try:
        chosen = resolve(load(config_path()), profile)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    verify: bool | str = True
    if insecure or chosen.insecure:
        verify = False
    elif ca_cert or chosen.ca_cert:
        verify = str(ca_cert or chosen.ca_cert)
    try:
        return Client(chosen.server, chosen.token, verify=verify)
    except OSError as exc:  # a CA bundle that is missing or not PEM
        raise fail(f"cannot use the CA bundle {verify}: {exc}", EXIT_USAGE) from None


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print client errors as one line (`--debug` or DORA_DEBUG=1: the traceback)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from dora.client import DoraError

        try:
            return func(*args, **kwargs)
        except DoraError as exc:
            if kwargs.get("debug") or os.environ.get("DORA_DEBUG"):
                raise
            raise fail(error_line(exc)) from None

    return wrapper


def error_line(exc: Any) -> str:
    """A client error as one line: the message, the field, and a hint when one helps."""
    where = f" ({exc.field})" if exc.field and exc.field not in exc.message else ""
    hint = ""
    if "CERTIFICATE_VERIFY_FAILED" in exc.message:
        hint = " (a self-signed API? pass --ca-cert FILE, or --insecure)"
    return f"{exc.message}{where}{hint}"
