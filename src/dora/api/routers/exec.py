"""Shell (WebSocket), logs (streamed) and stats of a container, through its node.

``WS /v1/containers/{name}/shell?zone=&workspace=&tty=&cmd=…&cmd=…``
    Needs ``Container: Shell``. ``cmd`` repeated gives the argv (default ``sh``);
    ``tty=true`` allocates a terminal. Authentication is the usual
    ``Authorization: Bearer <token>`` header (WebSocket clients such as the CLI send
    headers; `HTTPBearer` does not guard WebSocket routes, so this route checks it
    itself, with the same ban and rate limits). A browser's cross-site ``Origin`` is
    refused. Failures before the upgrade are plain HTTP answers with the usual JSON
    error body. Frames: `dora.exec_protocol`.
``GET /v1/containers/{name}/logs?follow=&tail=&since=&timestamps=``
    Needs ``Container: Log``. ``text/plain``, streamed while ``follow=true``.
``GET /v1/containers/{name}/stats``
    Needs ``Container: Describe``. One Docker stats sample.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, cast
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse

from dora.api.context import ApiContext
from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx, authenticate, bearer_token
from dora.api.errors import ApiError, forbidden, invalid
from dora.api.schemas import ErrorOut
from dora.api.services import exec as exec_service
from dora.exec_protocol import ProtocolError, check_argv, check_tail

log = logging.getLogger("dora.api.exec")

ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    400: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut, "description": "Not placed, not running, or being deleted"},
    502: {"model": ErrorOut, "description": "The node cannot be reached or is not who it was"},
    503: {"model": ErrorOut, "description": "The node has not reported its exec server yet"},
}

router = APIRouter(prefix="/v1/containers", tags=["containers"], responses=ERRORS)

NameP = Annotated[str, Path(description="the container's name", examples=["my-job.1"])]
ZoneQ = Annotated[str | None, Query(max_length=253, description="zone (default: yours)")]
WorkspaceQ = Annotated[str | None, Query(max_length=253, description="workspace (default: yours)")]
DEFAULT_ARGV = ["sh"]


@router.get(
    "/{name}/logs",
    summary="A container's output (streamed with follow=true)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "stdout and stderr"}},
)
async def logs(
    ctx: Ctx,
    caller: CallerDep,
    name: NameP,
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
    follow: Annotated[bool, Query(description="keep streaming new output")] = False,
    tail: Annotated[
        str, Query(pattern=r"^(all|[0-9]{1,8})$", description="last N lines, or all")
    ] = "all",
    since: Annotated[
        float | None, Query(ge=0, le=1e11, description="only output after this unix time")
    ] = None,
    timestamps: Annotated[bool, Query(description="prefix each line with its time")] = False,
) -> StreamingResponse:
    body = await exec_service.open_logs(
        ctx,
        caller,
        name,
        zone=zone,
        workspace=workspace,
        follow=follow,
        tail=check_tail(tail),
        since=since,
        timestamps=timestamps,
    )
    return StreamingResponse(
        body,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/{name}/stats", summary="One resource-usage sample of a running container")
async def stats(
    ctx: Ctx, caller: CallerDep, name: NameP, zone: ZoneQ = None, workspace: WorkspaceQ = None
) -> dict[str, Any]:
    return await exec_service.stats(ctx, caller, name, zone=zone, workspace=workspace)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def check_origin(websocket: WebSocket) -> None:
    """Browsers always send Origin: it must be this server's own. (Non-browser clients
    send none; they cannot be driven by another site.)"""
    origin = websocket.headers.get("origin")
    if origin is None:
        return
    host = websocket.headers.get("host", "")
    if urlsplit(origin).netloc.lower() != host.lower():
        raise forbidden(f"cross-site WebSocket from {origin!r} refused")


async def deny(websocket: WebSocket, error: ApiError) -> None:
    """Answer the upgrade request with an HTTP error (the client reads the status and
    the usual JSON body), or close at once where the server cannot."""
    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(code=1008, reason=error.message[:120])


@router.websocket("/{name}/shell")
async def shell(websocket: WebSocket, name: str) -> None:
    ctx: ApiContext = websocket.app.state.ctx
    query = websocket.query_params
    try:
        check_origin(websocket)
        request = cast(Request, websocket)  # both are HTTPConnections: headers, client
        caller = await authenticate(request, ctx, bearer_token(request))
        try:
            argv = check_argv(query.getlist("cmd") or list(DEFAULT_ARGV))
        except ProtocolError as exc:
            raise invalid(str(exc), field="cmd") from None
        tty = _truthy(query.get("tty"))
        node = await exec_service.open_shell(
            ctx,
            caller,
            name,
            zone=query.get("zone") or None,
            workspace=query.get("workspace") or None,
            argv=argv,
            tty=tty,
        )
    except ApiError as exc:
        await deny(websocket, exc)
        return
    await websocket.accept()
    log.info(
        "event=shell_open user=%s container=%s node=%s tty=%s",
        caller.name,
        node.target.label,
        node.target.node,
        tty,
    )
    code = await exec_service.relay(websocket, node)
    log.info("event=shell_close user=%s container=%s exit=%s", caller.name, node.target.label, code)
