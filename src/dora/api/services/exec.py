"""Shell, logs and stats of a container, proxied to its node's :3001 server.

For every request the API:

1. authorises the caller for ``Container: Shell`` / ``Log`` / ``Describe`` in the
   container's own zone and workspace (403 before anything else is revealed);
2. reads the Container record (404), which must be placed (409) — and, for a shell,
   running and not being deleted (409);
3. reads the Node record of *that* placement (never a node the client names): its
   ``spec.endpoint`` and the certificate fingerprint its agent reported over the
   authenticated report channel (``observed.endpoint_fingerprint``; 503 if none yet);
4. mints a ticket (`dora.auth.tickets`) naming the node, the operation and the exact
   container (workspace, name, uid) — and for a shell the argv and TTY flag;
5. connects over TLS **pinned to that fingerprint**: a node presenting any other
   certificate is refused before a byte of the request (and so the ticket) is sent
   (502 ``node_identity``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from starlette.websockets import WebSocket, WebSocketDisconnect

from dora.api.context import ApiContext
from dora.api.errors import ApiError, conflict, forbidden, invalid
from dora.api.identity import GLOBAL, Caller
from dora.api.services.resources import get_one, kind_info
from dora.auth.tickets import Operation, issue_ticket, signing_key
from dora.exec_protocol import MAX_FRAME, STDIN, ProtocolError, parse_control
from dora.store import Key, NotFound, Record

log = logging.getLogger("dora.api.exec")

NODE_CONNECT_S = 10.0
NODE_PORT = 3001
"""The exec/logs port of a Node whose endpoint names none."""
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def node_unreachable(message: str) -> ApiError:
    return ApiError(502, "node_unreachable", message)


@dataclass(frozen=True)
class Target:
    """A container and the node that runs it, as the API's records say."""

    container: Record
    node: str
    base_url: str
    """``https://host:port`` of the node's exec/logs server."""
    fingerprint: bytes

    @property
    def label(self) -> str:
        key = self.container.key
        return f"{key.workspace}/{key.name}"


def endpoint_base(endpoint: str) -> str:
    """``https://host:port`` from a Node's ``spec.endpoint`` (always TLS)."""
    parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
    if not parts.hostname:
        raise ValueError(f"no host in {endpoint!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"https://{host}:{parts.port or NODE_PORT}"


async def resolve(
    ctx: ApiContext,
    caller: Caller,
    name: str,
    *,
    zone: str | None,
    workspace: str | None,
    verb: str,
    need_running: bool,
    uid: str | None = None,
) -> Target:
    record = await get_one(
        ctx, caller, kind_info("Container"), name, zone=zone, workspace=workspace, verb=verb
    )
    key = record.key
    if uid is not None and record.uid != uid:
        raise forbidden(
            f"this container token was made for an earlier container {key.name} "
            "(it was re-created since); ask for a new one"
        )
    if not record.node:
        raise conflict(f"container {key.name} is not placed on a node yet")
    if need_running:
        if record.desired == "drain":
            raise conflict(f"container {key.name} is being deleted")
        state = (record.observed or {}).get("state")
        if state != "running":
            raise conflict(
                f"container {key.name} is {state or 'not started yet'}; a shell needs it running"
            )
    try:
        node = await ctx.store.get(Key("Node", key.zone, GLOBAL, record.node))
    except NotFound:
        raise conflict(f"node {record.node} of container {key.name} is not registered") from None
    fingerprint = str((node.observed or {}).get("endpoint_fingerprint") or "").lower()
    if not _HEX64.match(fingerprint):
        raise ApiError(
            503,
            "node_unavailable",
            f"node {record.node} has not reported its exec server's certificate yet "
            "(is its agent running?)",
        )
    try:
        base = endpoint_base(str(node.spec.get("endpoint") or ""))
    except ValueError as exc:
        raise ApiError(
            503, "node_unavailable", f"node {record.node}: bad endpoint: {exc}"
        ) from None
    return Target(record, record.node, base, bytes.fromhex(fingerprint))


def mint(
    ctx: ApiContext,
    caller: Caller,
    target: Target,
    op: Operation,
    *,
    argv: list[str] | None = None,
    tty: bool = False,
) -> str:
    key = target.container.key
    return issue_ticket(
        signing_key(ctx.settings.secret),
        zone=key.zone,
        node=target.node,
        op=op,
        workspace=key.workspace,
        name=key.name,
        uid=target.container.uid,
        user=caller.name,
        now=ctx.clock(),
        argv=argv or (),
        tty=tty,
    )


def _session() -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=NODE_CONNECT_S, sock_read=None)
    return aiohttp.ClientSession(timeout=timeout)


def _node_message(body: str) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(body).get("message") or "")
    return ""


def node_error(
    target: Target, exc: BaseException | None, status: int = 0, body: str = ""
) -> ApiError:
    """What the caller is told when the node cannot serve the request."""
    where = f"node {target.node} ({target.base_url})"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        log.warning(
            "event=node_fingerprint_mismatch node=%s expected=%s got=%s",
            target.node,
            exc.expected.hex(),
            exc.got.hex(),
        )
        return ApiError(
            502,
            "node_identity",
            f"{where} presented a certificate that does not match the fingerprint its agent "
            "reported; refusing to connect (after a certificate change the agent's next "
            "report fixes this)",
        )
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        status = exc.status
    message = _node_message(body)
    if status in (404, 409):
        return conflict(message or f"container {target.label} is not running on {where} right now")
    if status == 503:
        return ApiError(503, "node_busy", message or f"{where} is busy; try again")
    if status in (401, 403):
        log.warning("event=node_refused_ticket node=%s status=%s", target.node, status)
        return ApiError(
            502,
            "node_refused",
            f"{where} refused the API's ticket ({message or status}); is its agent "
            "connected to this API?",
        )
    if status == 400:
        return invalid(message or "the node refused the request")
    if status:
        return node_unreachable(f"{where} answered {status}: {message}".rstrip(": "))
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else "no answer"
    return node_unreachable(f"cannot reach {where}: {detail}")


# --------------------------------------------------------------------------- logs / stats


async def open_logs(
    ctx: ApiContext,
    caller: Caller,
    name: str,
    *,
    zone: str | None,
    workspace: str | None,
    follow: bool,
    tail: str,
    since: float | None,
    timestamps: bool,
) -> AsyncIterator[bytes]:
    """Connect to the node now (so failures are HTTP errors), then stream its bytes."""
    target = await resolve(
        ctx, caller, name, zone=zone, workspace=workspace, verb="Log", need_running=False
    )
    ticket = mint(ctx, caller, target, "logs")
    params = {"tail": tail, "follow": str(follow).lower(), "timestamps": str(timestamps).lower()}
    if since is not None:
        params["since"] = repr(float(since))
    session = _session()
    try:
        response = await session.get(
            f"{target.base_url}/v1/logs",
            params=params,
            headers={"Authorization": f"Bearer {ticket}"},
            ssl=aiohttp.Fingerprint(target.fingerprint),
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await session.close()
        raise node_error(target, exc) from None
    if response.status != 200:
        body = await response.text()
        response.release()
        await session.close()
        raise node_error(target, None, response.status, body)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError):
            return  # the node went away mid-stream: end the body
        finally:
            response.close()
            await session.close()

    return stream()


async def stats(
    ctx: ApiContext, caller: Caller, name: str, *, zone: str | None, workspace: str | None
) -> dict[str, Any]:
    target = await resolve(
        ctx, caller, name, zone=zone, workspace=workspace, verb="Describe", need_running=True
    )
    ticket = mint(ctx, caller, target, "stats")
    async with _session() as session:
        try:
            async with session.get(
                f"{target.base_url}/v1/stats",
                headers={"Authorization": f"Bearer {ticket}"},
                ssl=aiohttp.Fingerprint(target.fingerprint),
            ) as response:
                body = await response.text()
                if response.status != 200:
                    raise node_error(target, None, response.status, body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise node_error(target, exc) from None
    data = json.loads(body)
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- shell


@dataclass
class NodeShell:
    target: Target
    session: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.session.close()


async def open_shell(
    ctx: ApiContext,
    caller: Caller,
    name: str,
    *,
    zone: str | None,
    workspace: str | None,
    argv: list[str],
    tty: bool,
    uid: str | None = None,
) -> NodeShell:
    """`uid`: the container a container token was made for (None: any uid)."""
    target = await resolve(
        ctx,
        caller,
        name,
        zone=zone,
        workspace=workspace,
        verb="Shell",
        need_running=True,
        uid=uid,
    )
    ticket = mint(ctx, caller, target, "exec", argv=argv, tty=tty)
    session = _session()
    try:
        ws = await session.ws_connect(
            f"{target.base_url}/v1/exec",
            headers={"Authorization": f"Bearer {ticket}"},
            ssl=aiohttp.Fingerprint(target.fingerprint),
            heartbeat=30.0,
            max_msg_size=MAX_FRAME,
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await session.close()
        raise node_error(target, exc) from None
    return NodeShell(target, session, ws)


async def relay(client: WebSocket, shell: NodeShell) -> int | None:
    """Pass frames both ways until either side ends; the process's exit code, if any."""
    exit_code: int | None = None
    close_code = 1000

    async def upstream() -> None:
        """Client → node: stdin frames and control frames, checked."""
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                if not data or data[0] != STDIN or len(data) > MAX_FRAME:
                    raise ProtocolError("binary frames from the client are stdin (00 …)")
                await shell.ws.send_bytes(data)
                continue
            text = message.get("text")
            if text is not None:
                parse_control(text)
                await shell.ws.send_str(text)

    async def downstream() -> None:
        """Node → client: output frames, then the exit (or error) frame."""
        nonlocal exit_code, close_code
        async for message in shell.ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                await client.send_bytes(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    control = json.loads(message.data)
                    if isinstance(control.get("exit"), int):
                        exit_code = control["exit"]
                    if "error" in control:
                        close_code = 1011
                await client.send_text(message.data)
            elif message.type == aiohttp.WSMsgType.ERROR:
                close_code = 1011
                break

    up = asyncio.create_task(upstream())
    down = asyncio.create_task(downstream())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and isinstance(up.exception(), ProtocolError):
            with contextlib.suppress(Exception):
                await client.send_text(json.dumps({"error": str(up.exception())}))
            close_code = 1008
        elif up in done and up.exception() is not None:
            close_code = 1011
        if down in done and down.exception() is not None:
            close_code = 1011
            with contextlib.suppress(Exception):
                await client.send_text(json.dumps({"error": "the node connection failed"}))
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await shell.close()
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await client.close(code=close_code)
    return exit_code
