"""`dora server …`: the long-running services (API now; scheduler, node agent and
credit checker as they land)."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from dora.cli import node as node_cli

server_app = typer.Typer(
    name="server",
    help="Run Dora's services. Each reads the environment variables of the admin guide.",
    no_args_is_help=True,
)
node_cli.register(server_app)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(2)


@server_app.command(
    "api",
    help=(
        "Run the API server (port 3000 by default).\n\n"
        "Environment: ZONE (required), secret (required, the same on every replica), "
        "INIT_DB=true on the first start (creates the schema and prints the admin token "
        "once), DB_NAME, CONTACT_POINTS (ScyllaDB/Cassandra; without it an embedded "
        "SQLite file in DORA_DATA_DIR), HOST_IP, PORT, DORA_TLS_CERT/DORA_TLS_KEY, "
        "DORA_STORAGE_MOUNTS (name=/mount/point,…: where NFS storages' exports are "
        "mounted on this host, for dora ls/upload/download/sync), "
        "DORA_UPLOAD_MAX_FILE_MB, DORA_UPLOAD_MAX_CHUNK_MB, DORA_CONTAINER_TOKEN_TTL_S "
        "(seconds a container token for the shell WebSocket lives, 30), "
        "DORA_SQLITE_BUSY_S (seconds a write waits for another process's lock, 10), "
        "DORA_API_LIST_CACHE=off (repeated listings are answered from memory while the "
        "SQLite database is unchanged; who may see them is worked out again whenever a "
        "user, role or token changes, and bans and rate limits count every request).\n\n"
        "Logs: one access line per request on standard output (client, request line "
        "with tokens and shell arguments masked, status, duration), server events on "
        "standard error; --log-level WARNING keeps only warnings and errors.\n\n"
        "--workers N runs N API processes on the one port (Linux SO_REUSEPORT), each a "
        "full replica on the same database: one process fills one core. Failed-login "
        "bans and rate limits are counted per process, and a token revoked through one "
        "worker stops working on the others when they next read the change feed "
        "(~20 ms on SQLite).\n\n"
        "Examples:\n\n"
        "  ZONE=dora-cluster-1 secret=$(openssl rand -hex 32) INIT_DB=true dora server api\n\n"
        "  ZONE=dora-cluster-1 secret=... dora server api --workers 4"
    ),
)
def api_cmd(
    port: Annotated[int | None, typer.Option(help="TCP port (env PORT, default 3000)")] = None,
    host: Annotated[str | None, typer.Option(help="address to bind (default 0.0.0.0)")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate for HTTPS")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for HTTPS")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes sharing the port")] = 1,
    reuse_port: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    import uvicorn

    from dora.api.app import create_app
    from dora.api.serve import StoppableServer, loop_factory
    from dora.api.settings import ApiSettings, SettingsError
    from dora.store import StoreError
    from dora.store.config import StoreSettings, open_store

    configure_logging(log_level.upper())
    try:
        settings = ApiSettings.from_env()
        store_settings = StoreSettings.from_env(os.environ)
    except (SettingsError, StoreError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if bool(tls_cert) != bool(tls_key):
        raise _fail("--tls-cert and --tls-key go together")
    settings = replace(
        settings,
        port=port or settings.port,
        host=host or settings.host,
        tls_cert=str(tls_cert) if tls_cert else settings.tls_cert,
        tls_key=str(tls_key) if tls_key else settings.tls_key,
    )
    if workers > 1:
        from dora.api.workers import REUSE_PORT, supervise

        if not REUSE_PORT:
            raise _fail("--workers needs SO_REUSEPORT (Linux); run one process per port")
        args = ["--port", str(settings.port), "--host", settings.host, "--log-level", log_level]
        if settings.tls_cert and settings.tls_key:
            args += ["--tls-cert", settings.tls_cert, "--tls-key", settings.tls_key]
        raise typer.Exit(supervise(args, workers))

    async def run() -> None:
        store = await open_store(store_settings)
        if not settings.init_db and not await store.is_initialized():
            await store.close()
            raise SettingsError(
                "the database is not initialized yet: start the first API replica with "
                "INIT_DB=true (it creates the schema and prints the admin token once)"
            )
        app = create_app(settings, store)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            ssl_certfile=settings.tls_cert,
            ssl_keyfile=settings.tls_key,
            log_level=log_level.lower(),
            proxy_headers=False,
            access_log=False,  # the app writes its own, leaner (dora.api.access_log)
        )
        sockets = None
        if reuse_port:  # one worker of `--workers N`
            from dora.api.workers import reuse_port_socket

            sockets = [reuse_port_socket(settings.host, settings.port)]
        await StoppableServer(app, config).serve(sockets=sockets)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run())
    except (SettingsError, StoreError) as exc:
        raise _fail(str(exc)) from None


@server_app.command(
    "scheduler",
    help=(
        "Run the scheduler of one zone (talks to the database only).\n\n"
        "Environment: ZONE (required), CONTACT_POINTS and DB_NAME (or DORA_DATA_DIR and "
        "DB_NAME for the embedded SQLite file), DORA_NODE_LOST_GRACE_S (default 60: a "
        "node NOT_READY that long has its containers re-placed), DORA_LEASE_TTL_S "
        "(default 10), DORA_RECREATE_BACKOFF_S / DORA_RECREATE_BACKOFF_MAX_S (default "
        "10 / 300: a replica its node gave up on, a crash loop, is placed again after "
        "10 s, 20 s, 40 s … at most 300 s). Start two for failover: one leads, the other "
        "waits.\n\n"
        "Example:\n\n"
        "  ZONE=dora-cluster-1 DB_NAME=dora-db-1 dora server scheduler"
    ),
)
def scheduler_cmd(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    from dora.api.settings import SettingsError
    from dora.scheduler.loop import Scheduler, SchedulerSettings
    from dora.store import StoreError
    from dora.store.config import StoreSettings, open_store

    configure_logging(log_level.upper())
    try:
        settings = SchedulerSettings.from_env(os.environ)
        store_settings = StoreSettings.from_env(os.environ)
    except (StoreError, ValueError) as exc:
        raise _fail(str(exc)) from None

    async def run() -> None:
        store = await open_store(store_settings)
        try:
            if not await store.is_initialized():
                raise SettingsError(
                    "the database is not initialized yet: start the API with INIT_DB=true first"
                )
            stop = asyncio.Event()
            _stop_on_signals(stop)
            await Scheduler(store, settings).run(stop)
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except (SettingsError, StoreError) as exc:
        raise _fail(str(exc)) from None


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT end the loop cleanly (the lease is released for a fast takeover)."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def register(app: typer.Typer) -> None:
    app.add_typer(server_app)
