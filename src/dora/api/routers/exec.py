"""Shell (WebSocket), logs (streamed), stats, token, pause and resume of a container.

``WS /v1/containers/{name}/shell?zone=&workspace=&tty=&cmd=…&cmd=…[&token=…]``
    Needs ``Container: Shell``. ``cmd`` repeated gives the argv (default ``sh``);
    ``tty=true`` allocates a terminal. Authentication is the usual
    ``Authorization: Bearer <token>`` header (WebSocket clients such as the CLI send
    headers; `HTTPBearer` does not guard WebSocket routes, so this route checks it
    itself, with the same ban and rate limits) or, when no such header is sent,
    ``?token=`` with a container token (browsers cannot set headers on a WebSocket):
    single use, for exactly this container, and ``Container: Shell`` is still
    checked. A browser's cross-site ``Origin`` is refused. Failures before the
    upgrade are plain HTTP answers with the usual JSON error body. Frames:
    `dora.exec_protocol`.
``POST /v1/containers/{name}/token``
    Needs ``Container: Token``. A container token for the shell (`services.containers`).
``POST /v1/containers/{name}/pause`` · ``…/resume``
    Needs ``Container: Pause`` / ``Resume``. Freezes (``docker pause``) or thaws the
    container's processes; it keeps its GPUs and CPUs meanwhile.
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
from dora.api.schemas import ContainerTokenOut, ErrorOut, ResourceOut
from dora.api.services import containers
from dora.api.services import exec as exec_service
from dora.api.services.views import record_out
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
    try:
        lines = check_tail(tail)
    except ProtocolError as exc:
        raise invalid(str(exc), field="tail") from None
    body = await exec_service.open_logs(
        ctx,
        caller,
        name,
        zone=zone,
        workspace=workspace,
        follow=follow,
        tail=lines,
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


@router.post(
    "/{name}/token",
    summary="A single-use token that opens this container's shell WebSocket",
    description="For clients that cannot send an Authorization header on a WebSocket "
    "(browsers): pass it as `?token=` to `WS /v1/containers/{name}/shell`. It opens one "
    "shell, of this container only, within `expires_at`; the Shell verb is still needed.",
)
async def token(
    ctx: Ctx, caller: CallerDep, name: NameP, zone: ZoneQ = None, workspace: WorkspaceQ = None
) -> ContainerTokenOut:
    return await containers.issue_token(ctx, caller, name, zone=zone, workspace=workspace)


@router.post(
    "/{name}/pause",
    summary="Freeze a container's processes (it keeps its GPUs and CPUs)",
    description="`docker pause` on its node. Unlike pausing a workload, which stops its "
    "containers and frees their GPUs, the container stays where it is, holding its "
    "booking, until it is resumed.",
)
async def pause(
    ctx: Ctx, caller: CallerDep, name: NameP, zone: ZoneQ = None, workspace: WorkspaceQ = None
) -> ResourceOut:
    record = await containers.set_paused(
        ctx, caller, name, paused=True, zone=zone, workspace=workspace
    )
    return record_out(record, now=ctx.clock(), ready_s=ctx.settings.node_ready_s)


@router.post("/{name}/resume", summary="Let a paused container's processes run again")
async def resume(
    ctx: Ctx, caller: CallerDep, name: NameP, zone: ZoneQ = None, workspace: WorkspaceQ = None
) -> ResourceOut:
    record = await containers.set_paused(
        ctx, caller, name, paused=False, zone=zone, workspace=workspace
    )
    return record_out(record, now=ctx.clock(), ready_s=ctx.settings.node_ready_s)


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
        zone, workspace = query.get("zone") or None, query.get("workspace") or None
        bearer, uid = bearer_token(request), None
        if bearer is None and query.get("token"):
            caller, ref = await containers.redeem_token(
                ctx, websocket, query["token"], name, zone=zone, workspace=workspace
            )
            zone, workspace, uid = ref.zone, ref.workspace, ref.uid
        else:
            caller = await authenticate(request, ctx, bearer)
        try:
            argv = check_argv(query.getlist("cmd") or list(DEFAULT_ARGV))
        except ProtocolError as exc:
            raise invalid(str(exc), field="cmd") from None
        tty = _truthy(query.get("tty"))
        node = await exec_service.open_shell(
            ctx,
            caller,
            name,
            zone=zone,
            workspace=workspace,
            argv=argv,
            tty=tty,
            uid=uid,
        )
    except ApiError as exc:
        await deny(websocket, exc)
        return
    await websocket.accept()
    log.info(
        "event=shell_open user=%s container=%s node=%s tty=%s auth=%s",
        caller.name,
        node.target.label,
        node.target.node,
        tty,
        "bearer" if uid is None else "container-token",
    )
    code = await exec_service.relay(websocket, node)
    log.info("event=shell_close user=%s container=%s exit=%s", caller.name, node.target.label, code)
