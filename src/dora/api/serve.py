"""Serving the API app with uvicorn, so that shutting down is prompt and quiet, and
the process does not pause for garbage collection under load."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory() -> LoopFactory | None:
    """uvloop's event loop where it is installed (`uvicorn[standard]` brings it on
    Linux and macOS), else asyncio's own. `uvicorn.run` would pick it by itself;
    `dora server api` runs the server inside its own `asyncio` runner, so it asks here."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, PyPy
        return None
    return uvloop.new_event_loop


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, the app, its routes and pydantic
    models: ~95,000 objects) out of the collector's reach.

    A full collection otherwise walks all of them: 39-44 ms on the development VM
    under load, a pause every request in flight waits for, every ~1,000 applies. They
    live as long as the process, so never collecting them costs nothing; objects
    made later (requests, caches) are collected as usual."""
    gc.collect()
    gc.freeze()


class StoppableServer(uvicorn.Server):
    """Tells the app it is stopping before uvicorn drains connections, so agents'
    long-polls answer at once instead of holding the shutdown for their full wait."""

    def __init__(self, app: FastAPI, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)  # the app's lifespan has run by now
        freeze_startup_objects()

    def stop(self) -> None:
        self._app.state.ctx.stopping.set()
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.ctx.stopping.set()
        super().handle_exit(sig, frame)
