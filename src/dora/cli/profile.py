"""`dora profile init|use|list|delete`: which API server and token the CLI uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dora.cli.common import EXIT_USAGE, fail
from dora.cli.config import Config, ConfigError, Profile, config_path, load, save

profile_app = typer.Typer(
    name="profile", help="Profiles: an API server and a token, by name.", no_args_is_help=True
)


@profile_app.command("init")
def init_cmd(
    name: Annotated[str, typer.Argument(help="profile name, e.g. admin")],
    api_server: Annotated[str, typer.Option("--api-server", "-s", help="API URL")],
    token: Annotated[str, typer.Option("--token", "-t", help="API token")],
    insecure: Annotated[
        bool, typer.Option("--insecure", help="accept a self-signed API certificate")
    ] = False,
    ca_cert: Annotated[str | None, typer.Option("--ca-cert", help="CA bundle")] = None,
) -> None:
    """Add (or replace) a profile and make it the current one. Other profiles stay.

    Example:

      dora profile init admin --api-server https://dora.example.org --token eyJ…
    """
    if not api_server.startswith(("http://", "https://")):
        raise fail("--api-server must start with http:// or https://", EXIT_USAGE)
    path = config_path()
    config = _load(path)
    config.profiles[name] = Profile(api_server.rstrip("/"), token, insecure, ca_cert)
    config.current = name
    save(path, config)
    typer.echo(f"profile {name} saved in {path} and in use")


def _load(path: Path) -> Config:
    try:
        return load(path)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


@profile_app.command("use")
def use_cmd(name: Annotated[str, typer.Argument(help="profile name")]) -> None:
    """Switch the current profile.

    Example:

      dora profile use admin
    """
    path = config_path()
    config = _load(path)
    if name not in config.profiles:
        raise fail(f"no profile named {name!r}", EXIT_USAGE)
    config.current = name
    save(path, config)
    typer.echo(f"using profile {name}")


@profile_app.command("list")
def list_cmd() -> None:
    """List profiles (`*` marks the current one); tokens are never shown.

    Example:

      dora profile list
    """
    config = _load(config_path())
    if not config.profiles:
        typer.echo("no profiles yet: dora profile init NAME --api-server URL --token TOKEN")
    for name, p in sorted(config.profiles.items()):
        mark = "*" if name == config.current else " "
        typer.echo(f"{mark} {name}  {p.server}")


@profile_app.command("delete")
def delete_cmd(name: Annotated[str, typer.Argument(help="profile name")]) -> None:
    """Forget a profile (its token is removed from the file).

    Example:

      dora profile delete old-cluster
    """
    path = config_path()
    config = _load(path)
    if config.profiles.pop(name, None) is None:
        raise fail(f"no profile named {name!r}", EXIT_USAGE)
    if config.current == name:
        config.current = None
    save(path, config)
    typer.echo(f"profile {name} deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app)
