"""`dora server node`: the node agent (runs this node's containers in Docker)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

HELP = (
    "Run the node agent: report this node's CPUs, memory and GPUs, and run the "
    "containers the scheduler assigns to it in Docker.\n\n"
    "Environment: API_ENDPOINT, NODE_NAME and API_TOKEN (required); ZONE (default: the "
    "API's zone); PORT (exec/logs server, default 3001); DORA_REPORT_INTERVAL_S "
    "(default 5); DORA_INSECURE_API=true or DORA_API_CA=<pem> for a self-signed API "
    "certificate; DORA_NODE_TLS_CERT/DORA_NODE_TLS_KEY for the exec/logs server (default: "
    "a self-signed one, pinned by the API) and DORA_EXEC_BIND (its address); DOCKER_HOST "
    "(or DOCKER_SOCKET) for the engine; DORA_EXTRA_LABELS; "
    "DORA_STOP_GRACE_S; DORA_RESTART_BACKOFF_S, DORA_CRASH_LOOP_LIMIT.\n\n"
    "Example:\n\n"
    "  API_ENDPOINT=https://yourdoraapi.com NODE_NAME=node1 API_TOKEN=… dora server node"
)


def node_cmd(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    from dora.node.agent import serve
    from dora.node.docker import DriverError
    from dora.node.server import TlsError
    from dora.node.settings import NodeSettings, NodeSettingsError

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    # httpx logs every request at INFO; the agent long-polls and heartbeats.
    for noisy in ("httpx", "httpcore", "aiohttp", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = NodeSettings.from_env()
    except NodeSettingsError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        try:
            await serve(settings)
        except asyncio.CancelledError:
            logging.getLogger("dora.node").info("event=agent_stop (containers keep running)")

    try:
        asyncio.run(main())
    except DriverError as exc:
        typer.secho(f"error: {exc.reason}", err=True, fg="red")
        raise typer.Exit(2) from None
    except TlsError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("node", help=HELP)(node_cmd)
