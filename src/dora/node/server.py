"""The node agent's exec/logs server (``PORT``, default 3001): HTTPS only, tickets only.

Routes (every one needs ``Authorization: Bearer <ticket>``, see `dora.auth.tickets`):

``GET /v1/exec`` (WebSocket)
    Runs the ticket's argv (with a TTY when the ticket says so) in the ticket's
    container; frames as in `dora.exec_protocol`: stdin, resize, end of stdin in;
    stdout/stderr and ``{"exit": code}`` out.
``GET /v1/logs?tail=&since=&timestamps=&follow=``
    The container's output as ``text/plain`` bytes, streamed with ``follow=true``.
``GET /v1/stats``
    One Docker stats sample as JSON.

What the node checks, in order: a ticket is there; it is signed by the API's ticket
key (learned from the report replies); it is for *this* node and zone and for this
route's operation; it was not used before (single use); it has not expired. Then the
container is looked up through `Agent.container_for` — (workspace, name, uid) of a
container assigned to this node with exactly that uid — and only its Docker id is
used. Nothing the client sends can name a Docker container, a node or a command.

The certificate is ``DORA_NODE_TLS_CERT``/``DORA_NODE_TLS_KEY`` when given, otherwise a
self-signed one made at start and kept in memory. Its SHA-256 fingerprint goes out
in every report; the API pins it when it connects. Tickets and tokens are never
logged (the access log is off; refusals log the reason and the peer only).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiodocker
import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from dora.auth.tickets import InvalidTicket, Ticket, load_public_key, verify_ticket
from dora.exec_protocol import (
    MAX_FRAME,
    STDIN,
    DockerDemux,
    ProtocolError,
    check_tail,
    frame,
    parse_control,
)
from dora.node.client import Backoff

if TYPE_CHECKING:
    from dora.node.agent import Agent, ContainerRef
    from dora.node.settings import NodeSettings

log = logging.getLogger("dora.node.server")

MAX_SESSIONS = 64
"""Exec sessions at once; more get 503 (the original allowed 10)."""
EXIT_WAIT_S = 5.0


class TlsError(Exception):
    """The node's certificate or key cannot be used; the message says why."""


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsIdentity:
    cert_pem: bytes
    key_pem: bytes
    fingerprint: str
    """Hex SHA-256 of the leaf certificate (DER), as reported to the API."""

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with _pem_files(self.cert_pem, self.key_pem) as (cert, key):
            context.load_cert_chain(cert, key)
        return context


def cert_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first (leaf) certificate of a PEM chain."""
    try:
        leaf = x509.load_pem_x509_certificates(cert_pem)[0]
    except (ValueError, IndexError) as exc:
        raise TlsError(f"not a PEM certificate: {exc}") from None
    return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()


def self_signed(node: str, *, days: int = 3650) -> TlsIdentity:
    """A fresh P-256 key and a self-signed certificate naming the node. Its validity
    does not matter to the API (which pins the fingerprint), so it is long."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dora-node {node}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    with contextlib.suppress(ValueError):
        alt.append(x509.DNSName(node))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return TlsIdentity(cert_pem, key_pem, cert_fingerprint(cert_pem))


def load_identity(cert_file: str | None, key_file: str | None, node: str) -> TlsIdentity:
    """The admin's certificate and key, or a self-signed pair made now."""
    if not cert_file:
        return self_signed(node)
    try:
        cert_pem = Path(cert_file).read_bytes()
        key_pem = Path(key_file or "").read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the node certificate or key: {exc}") from None
    identity = TlsIdentity(cert_pem, key_pem, cert_fingerprint(cert_pem))
    try:
        identity.server_context()
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(
            f"DORA_NODE_TLS_CERT/DORA_NODE_TLS_KEY do not make a usable pair: {exc}"
        ) from None
    return identity


@contextlib.contextmanager
def _pem_files(cert_pem: bytes, key_pem: bytes) -> Iterator[tuple[str, str]]:
    """Paths `load_cert_chain` can read: anonymous memory files where Linux has them
    (the key never touches a disk), else a private temporary folder."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fds = [os.memfd_create("dora-node-tls"), os.memfd_create("dora-node-tls")]
        try:
            for fd, data in zip(fds, (cert_pem, key_pem), strict=True):
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="dora-node-tls-") as folder:
        cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
        for path, data in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        yield str(cert), str(key)


# --------------------------------------------------------------------------- server


def _error(status: int, code: str, message: str) -> web.HTTPException:
    body = json.dumps({"code": code, "message": message})
    cls: type[web.HTTPException] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        502: web.HTTPBadGateway,
        503: web.HTTPServiceUnavailable,
    }[status]
    return cls(text=body, content_type="application/json")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class NodeServer:
    """The :3001 server of one agent. Construct it before the agent starts (the
    certificate's fingerprint must be in the first report); `run` is the service
    the agent's task group runs."""

    def __init__(
        self,
        settings: NodeSettings,
        identity: TlsIdentity,
        *,
        clock: Callable[[], float] = time.time,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.clock = clock
        self.max_sessions = max_sessions
        self.sessions = 0
        self.port: int | None = None
        """The port actually bound (PORT, or the kernel's pick for PORT=0 in tests)."""
        self.listening = asyncio.Event()
        self._agent: Agent | None = None
        self._used: dict[str, float] = {}
        self._keys: dict[str, Ed25519PublicKey] = {}

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> NodeServer:
        identity = load_identity(settings.tls_cert, settings.tls_key, settings.node_name)
        return cls(settings, identity)

    @property
    def agent(self) -> Agent:
        assert self._agent is not None, "the server runs inside an agent"
        return self._agent

    # ------------------------------------------------------------------ tickets
    def _ticket_keys(self) -> list[Ed25519PublicKey]:
        """The API's current ticket key, and the one before it (a secret rotation
        reaches API replicas one at a time)."""
        text = self.agent.ticket_key
        if text and text not in self._keys:
            try:
                key = load_public_key(text)
            except InvalidTicket as exc:
                log.warning("event=ticket_key_invalid reason=%s", exc.reason)
            else:
                newest = list(self._keys.items())[-1:]
                self._keys = {**dict(newest), text: key}
        return list(reversed(self._keys.values()))

    def authorize(self, request: web.Request, op: str) -> tuple[Ticket, ContainerRef]:
        peer = request.remote or "?"
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            log.warning("event=ticket_refused op=%s peer=%s reason=missing", op, peer)
            raise _error(401, "unauthorized", "missing ticket: the API hands these out")
        now = self.clock()
        try:
            ticket = verify_ticket(
                self._ticket_keys(),
                token.strip(),
                zone=self.agent.zone,
                node=self.settings.node_name,
                now=now,
            )
        except InvalidTicket as exc:
            log.warning("event=ticket_refused op=%s peer=%s reason=%s", op, peer, exc.reason)
            raise _error(401, "unauthorized", f"invalid ticket: {exc.reason}") from None
        if ticket.op != op:
            log.warning("event=ticket_refused op=%s peer=%s reason=wrong-op", op, peer)
            raise _error(403, "forbidden", f"this ticket is for {ticket.op}, not {op}")
        self._used = {j: exp for j, exp in self._used.items() if exp + 60 > now}
        if ticket.jti in self._used:
            log.warning("event=ticket_refused op=%s peer=%s reason=replayed", op, peer)
            raise _error(401, "unauthorized", "invalid ticket: already used")
        self._used[ticket.jti] = ticket.expires_at
        ref = self.agent.container_for(ticket.workspace, ticket.name, ticket.uid)
        if ref is None:
            log.warning(
                "event=ticket_refused op=%s peer=%s reason=no-container container=%s/%s",
                op,
                peer,
                ticket.workspace,
                ticket.name,
            )
            raise _error(
                404,
                "not_found",
                f"container {ticket.workspace}/{ticket.name} (that uid) is not on this node",
            )
        return ticket, ref

    # ------------------------------------------------------------------ routes
    async def exec_route(self, request: web.Request) -> web.StreamResponse:
        ticket, ref = self.authorize(request, "exec")
        if self.sessions >= self.max_sessions:
            raise _error(503, "busy", f"this node has {self.sessions} shells open; try later")
        docker = self.agent.driver.docker
        container = docker.containers.container(ref.container_id)
        try:
            execution = await container.exec(
                list(ticket.argv), stdin=True, stdout=True, stderr=True, tty=ticket.tty
            )
        except aiodocker.DockerError as exc:
            status = 409 if exc.status in (404, 409) else 502
            raise _error(status, "exec_failed", f"cannot exec: {exc.message}") from None
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        self.sessions += 1
        log.info(
            "event=exec_start user=%s container=%s/%s tty=%s sessions=%d",
            ticket.user,
            ticket.workspace,
            ticket.name,
            ticket.tty,
            self.sessions,
        )
        code: int | None = None
        try:
            code = await self._session(ws, execution, ticket.tty)
        except ProtocolError as exc:
            with contextlib.suppress(Exception):
                await ws.send_str(json.dumps({"error": str(exc)}))
                await ws.close(code=1008)
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            with contextlib.suppress(Exception):
                await ws.send_str(json.dumps({"error": f"exec failed: {exc}"}))
                await ws.close(code=1011)
        finally:
            self.sessions -= 1
            log.info(
                "event=exec_end user=%s container=%s/%s exit=%s",
                ticket.user,
                ticket.workspace,
                ticket.name,
                code,
            )
        return ws

    async def _session(
        self, ws: web.WebSocketResponse, execution: aiodocker.execs.Exec, tty: bool
    ) -> int | None:
        async with execution.start(detach=False) as stream:

            async def output() -> None:
                while True:
                    message = await stream.read_out()
                    if message is None:
                        return
                    await ws.send_bytes(frame(message.stream, message.data))

            async def requests() -> None:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        data: bytes = message.data
                        if not data or data[0] != STDIN:
                            raise ProtocolError("binary frames from the client are stdin (00 …)")
                        if len(data) > 1:
                            await stream.write_in(data[1:])
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        control = parse_control(message.data)
                        if control.resize is not None and tty:
                            cols, rows = control.resize
                            with contextlib.suppress(aiodocker.DockerError):
                                await execution.resize(h=rows, w=cols)
                        if control.eof:
                            _close_stdin(stream)
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        return

            out_task = asyncio.create_task(output())
            in_task = asyncio.create_task(requests())
            try:
                done, _ = await asyncio.wait({out_task, in_task}, return_when="FIRST_COMPLETED")
                if in_task in done and in_task.exception() is not None:
                    raise in_task.exception()  # type: ignore[misc]
                if out_task not in done:
                    return None  # the client left; the process gets a hang-up / EOF
                out_task.result()
            finally:
                for task in (out_task, in_task):
                    task.cancel()
                for task in (out_task, in_task):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        code = await _exit_code(execution)
        await ws.send_str(json.dumps({"exit": code}))
        await ws.close(code=1000)
        return code

    async def logs_route(self, request: web.Request) -> web.StreamResponse:
        _, ref = self.authorize(request, "logs")
        query = request.query
        try:
            tail = check_tail(query.get("tail"))
            since = float(query["since"]) if query.get("since") else None
        except (ProtocolError, ValueError) as exc:
            raise _error(400, "invalid", str(exc)) from None
        follow = _truthy(query.get("follow"))
        params: dict[str, Any] = {
            "stdout": "1",
            "stderr": "1",
            "follow": "1" if follow else "0",
            "tail": tail,
            "timestamps": "1" if _truthy(query.get("timestamps")) else "0",
        }
        if since is not None:
            params["since"] = f"{max(since, 0.0):.9f}"
        driver = self.agent.driver
        info = await driver.inspect(ref.container_id)
        tty = bool(((info or {}).get("Config") or {}).get("Tty"))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        try:
            async with driver.docker._query(
                f"containers/{ref.container_id}/logs", params=params, timeout=timeout
            ) as upstream:
                response = web.StreamResponse(
                    headers={
                        "Content-Type": "text/plain; charset=utf-8",
                        "Cache-Control": "no-store",
                        "X-Content-Type-Options": "nosniff",
                    }
                )
                await response.prepare(request)
                demux = DockerDemux()
                async for chunk in upstream.content.iter_any():
                    parts = [(1, chunk)] if tty else demux.feed(chunk)
                    for _, data in parts:
                        await response.write(data)
                await response.write_eof()
                return response
        except aiodocker.DockerError as exc:
            raise _error(409, "logs_failed", f"cannot read logs: {exc.message}") from None

    async def stats_route(self, request: web.Request) -> web.Response:
        _, ref = self.authorize(request, "stats")
        container = self.agent.driver.docker.containers.container(ref.container_id)
        try:
            samples = await container.stats(stream=False)
        except aiodocker.DockerError as exc:
            raise _error(409, "stats_failed", f"cannot read stats: {exc.message}") from None
        return web.json_response(samples[0] if samples else {})

    # ------------------------------------------------------------------ serving
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/v1/exec", self.exec_route)
        app.router.add_get("/v1/logs", self.logs_route)
        app.router.add_get("/v1/stats", self.stats_route)
        return app

    async def run(self, agent: Agent) -> None:
        """Serve until cancelled. A port that cannot be bound (taken, no permission)
        is retried with backoff and logged; the agent keeps running containers."""
        self._agent = agent
        agent.endpoint_fingerprint = self.identity.fingerprint
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        host = self.settings.exec_bind or None
        backoff = Backoff(base_s=1.0, cap_s=30.0)
        last_error = ""
        try:
            while True:
                site = web.TCPSite(
                    runner,
                    host,
                    self.settings.port,
                    ssl_context=self.identity.server_context(),
                    reuse_address=True,
                )
                try:
                    await site.start()
                    break
                except OSError as exc:
                    message = str(exc)
                    if message != last_error:
                        log.error(
                            "event=exec_server_bind_failed port=%s error=%s (retrying; shells "
                            "and logs of this node do not work until it binds)",
                            self.settings.port,
                            message,
                        )
                        last_error = message
                    await asyncio.sleep(backoff.next_delay())
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
            self.listening.set()
            log.info(
                "event=exec_server_listening port=%s fingerprint=%s",
                self.port,
                self.identity.fingerprint,
            )
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def _close_stdin(stream: Any) -> None:
    """Half-close the exec's hijacked connection: Docker closes the process's stdin."""
    response = getattr(stream, "_resp", None)
    connection = getattr(response, "connection", None)
    transport = getattr(connection, "transport", None)
    if transport is not None and transport.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            transport.write_eof()


async def _exit_code(execution: aiodocker.execs.Exec) -> int | None:
    """The exec's exit code once Docker has it (the stream may end just before)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EXIT_WAIT_S
    while True:
        info = await execution.inspect()
        code = info.get("ExitCode")
        if not info.get("Running") and code is not None:
            return int(code)
        if loop.time() > deadline:
            return None
        await asyncio.sleep(0.02)
