"""Entry point of the `dora` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from dora import __version__
from dora.cli import account, files, profile, resources, server, tokens, up, validate
from dora.cli import exec as exec_cli
from dora.cli.common import ProfileOpt, client_for, error_line

app = typer.Typer(
    name="dora",
    help=(
        "Dora shares GPU and CPU servers: submit container workloads as YAML, "
        "the scheduler places them on nodes with the right GPUs.\n\n"
        "Start here:\n\n"
        "  dora profile init admin --api-server http://127.0.0.1:3000 --token …\n\n"
        "  dora apply -f job.yaml          create or update what the file describes\n\n"
        "  dora get wk                     your workloads (wk, c, nodes, gpu, vol, …)\n\n"
        "  dora why wk my-job              why it is not running yet\n\n"
        "  dora validate -f job.yaml       check files offline"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
profile.register(app)
resources.register(app)
tokens.register(app)
validate.register(app)
server.register(app)
up.register(app)
exec_cli.register(app)
files.register(app)
account.register(app)


@app.command("version")
def version_cmd(
    profile_name: ProfileOpt = None,
    client_only: bool = typer.Option(False, "--client", help="do not ask the server"),
) -> None:
    """Print the client version and, when a profile is set up, the server's.

    Exits 1 when the server cannot be asked (the client line is printed first).

    Examples:

      dora version

      dora version --client
    """
    typer.echo(f"client  {__version__}")
    if client_only:
        return
    from dora.cli.config import ConfigError, config_path, load, resolve
    from dora.client import DoraError

    try:
        chosen = resolve(load(config_path()), profile_name)
    except ConfigError:
        return
    try:
        with client_for(profile_name) as dora:
            info = dora.version()
        typer.echo(f"server  {info.server}  ({chosen.server}, zone {info.zone})")
    except DoraError as exc:
        typer.echo(f"error: server version unknown: {error_line(exc)}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
