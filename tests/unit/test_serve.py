"""How `dora server api` serves: uvloop, and the start-up heap frozen out of the GC."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from pathlib import Path

import uvicorn
import uvloop

from dora.api.app import create_app
from dora.api.serve import StoppableServer, loop_factory
from dora.api.settings import ApiSettings
from dora.store.sqlite import SqliteStore

SECRET = "aVeryLongSecretEncrypted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_server_runs_on_uvloop_where_installed() -> None:
    assert loop_factory() is uvloop.new_event_loop


async def test_start_up_freezes_what_is_alive_out_of_the_collector(tmp_path: Path) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    port = free_port()
    settings = ApiSettings(
        zone="dora-cluster-1", secret=SECRET, init_db=True, host="127.0.0.1", port=port
    )
    app = create_app(settings, SqliteStore(tmp_path / "t.sqlite3"), announce=lambda _: None)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = StoppableServer(app, config)
    serving = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert not serving.done() and time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 10_000  # the app, its routes and models
    finally:
        server.stop()
        await asyncio.wait_for(serving, 30)
        gc.unfreeze()
