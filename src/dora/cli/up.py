"""`dora up`: the whole cluster on this machine in one command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dora.cli.common import EXIT_USAGE, fail


def up_cmd(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="where state lives (default: DORA_DATA_DIR or the data directory)"),
    ] = None,
    port: Annotated[int, typer.Option(help="API port")] = 3000,
    node_port: Annotated[int, typer.Option(help="this node's exec/logs port")] = 3001,
    sample: Annotated[
        bool, typer.Option("--sample", help="run a sample workload and show its output")
    ] = False,
    node_name: Annotated[
        str | None, typer.Option(help="this node's name (default: hostname)")
    ] = None,
    zone: Annotated[str, typer.Option(help="the zone's name")] = "local",
) -> None:
    """Run Dora on this machine: API, scheduler and a node agent, on embedded SQLite.

    Writes the CLI profile `local` (admin), so `dora get nodes` works right away.
    Stop with Ctrl-C: containers keep running and are adopted on the next start.
    Without a running Docker engine it starts one (as root on Debian it installs
    docker.io first); otherwise it says what is missing. DORA_GPU_MODE
    (device-request or runtime-env) says how GPUs reach containers, as for
    `dora server node`.

    Examples:

      dora up --sample

      dora up --data-dir ~/dora --port 3100
    """
    from dora.node.settings import NodeSettingsError, parse_gpu_mode
    from dora.store import StoreError
    from dora.store.config import data_dir_from_env
    from dora.up import UpError, UpSettings, local_node_name, run

    try:
        chosen = data_dir or data_dir_from_env(os.environ, is_root=os.geteuid() == 0)
        gpu_mode = parse_gpu_mode(os.environ.get("DORA_GPU_MODE"))
    except (StoreError, NodeSettingsError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    settings = UpSettings(
        data_dir=chosen,
        port=port,
        node_port=node_port,
        zone=zone,
        node_name=node_name or local_node_name(),
        sample=sample,
        gpu_mode=gpu_mode,
    )
    try:
        run(settings, lambda line: typer.echo(line))
    except UpError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("up")(up_cmd)
