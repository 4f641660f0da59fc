"""Serving the API app with uvicorn, so that shutting down is prompt and quiet."""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI


class StoppableServer(uvicorn.Server):
    """Tells the app it is stopping before uvicorn drains connections, so agents'
    long-polls answer at once instead of holding the shutdown for their full wait."""

    def __init__(self, app: FastAPI, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._app = app

    def stop(self) -> None:
        self._app.state.ctx.stopping.set()
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.ctx.stopping.set()
        super().handle_exit(sig, frame)
