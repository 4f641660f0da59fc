"""The API server's ASGI app: `create_app` wires settings, store, identity and routes."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dora import __version__
from dora.api.access_log import AccessLog
from dora.api.bootstrap import bootstrap
from dora.api.context import ApiContext
from dora.api.errors import install_error_handlers
from dora.api.identity import Identity
from dora.api.list_cache import ListCacheMiddleware
from dora.api.logs import redact_tokens_in_logs
from dora.api.metrics import Metrics
from dora.api.routers import exec as exec_routes
from dora.api.routers import nodes, resources, system, tokens, users, volumes, workspaces
from dora.api.settings import ApiSettings
from dora.store import Store


def _announce(line: str) -> None:
    # The admin token goes to stdout exactly once, where `docker logs … | grep -i token`
    # finds it; it is never passed to the logging system.
    print(line, file=sys.stdout, flush=True)


def create_app(
    settings: ApiSettings,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    announce: Callable[[str], None] = _announce,
    close_store: bool = True,
) -> FastAPI:
    metrics = Metrics()
    timed_store = metrics.instrument(store)
    identity = Identity(timed_store, settings.secret, clock=clock)
    ctx = ApiContext(
        settings=settings, store=timed_store, identity=identity, metrics=metrics, clock=clock
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        redact_tokens_in_logs()  # uvicorn has set up its log handlers by now
        await bootstrap(store, settings, now=clock(), announce=announce)
        await identity.start()
        try:
            yield
        finally:
            await identity.stop()
            if close_store:
                await store.close()

    app = DoraApi(
        title="Dora API",
        version=__version__,
        description="Share GPU and CPU servers: resources, tokens and the node channel.",
        lifespan=lifespan,
        # Dora exports Prometheus metrics (`/metrics`); FastAPI's OpenTelemetry bridge
        # would look up the global OTel providers on every request (~25 µs each).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in (system, tokens, resources, nodes, volumes):
        app.include_router(module.router)
    app.include_router(exec_routes.router)
    app.include_router(workspaces.router)
    app.include_router(users.router)

    # The front door, outside Starlette's middleware stack: every request is counted
    # and logged; the listings the cache answers never enter FastAPI at all.
    inner: ASGIApp = app.framework
    generation = getattr(store, "generation", None)
    if settings.list_cache and callable(generation):
        inner = ListCacheMiddleware(inner, ctx=ctx, generation=generation)
    app.front = CountRequests(inner, metrics=metrics, access_log=AccessLog())
    return app


class DoraApi(FastAPI):
    """FastAPI with a front door: `front` (request metrics, the access log, the listing
    cache) sees each request first and hands what it does not answer to `framework`,
    FastAPI's own stack (error handlers, routing). Every middleware layer costs each
    request a call and a wrapped `send`; the cached listings, the most repeated
    request, skip the framework's four."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None or scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await self.front(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


class CountRequests:
    """Request count and latency by route template, and the access log line
    (`dora.api.access_log`), as a plain ASGI middleware (the `@app.middleware("http")`
    form runs every request through extra tasks and streams, which costs more than
    the metrics themselves)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: AccessLog) -> None:
        self.app = app
        self.record = metrics.stats.record
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            self.record(_route_template(scope), scope["method"], status, elapsed)
            self.access_log.write(scope, status, elapsed)


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so metrics do not grow one series per name.

    The router records the route it picked in the scope (FastAPI includes routers
    lazily, so `app.router.routes` does not list the API's routes to match against)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else "unmatched"
