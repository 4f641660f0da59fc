"""Entry point of the `dora` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from dora import __version__
from dora.cli import server, validate

app = typer.Typer(
    name="dora",
    help=(
        "Dora shares GPU and CPU servers: submit container workloads as YAML, "
        "the scheduler places them on nodes with the right GPUs.\n\n"
        "Examples:\n\n"
        "  dora validate -f job.yaml      check files offline\n\n"
        "  dora version                   print the client version"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
validate.register(app)
server.register(app)


@app.command("version")
def version_cmd() -> None:
    """Print the client version."""
    typer.echo(f"dora client {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
