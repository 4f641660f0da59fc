"""SDK helpers for a container's logs and for running commands in it.

    with Client(server, token) as dora:
        for line in dora.logs("my-job.1", tail=100):
            print(line)
        result = dora.exec("my-job.1", ["sh", "-c", "nvidia-smi; exit 3"])
        print(result.exit_code, result.output)

Logs are ``GET /v1/containers/{name}/logs`` (streamed); commands run over the
WebSocket ``/v1/containers/{name}/shell`` (frames in `dora.exec_protocol`). The API
checks your roles (``Container: Log`` / ``Shell``) and talks to the node for you.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from dora.client.errors import ConnectionFailed, DoraError, error_for
from dora.exec_protocol import EOF_FRAME, STDERR, STDIN, STDOUT, frame, parse_since

if TYPE_CHECKING:
    import httpx
    from websockets.asyncio.client import ClientConnection as AsyncConnection

    from dora.client.client import AsyncClient, Client

OPEN_TIMEOUT_S = 30.0


@dataclass
class ExecResult:
    """What a command printed, and how it ended."""

    exit_code: int | None
    """The process's exit status (None: the session ended before it was known)."""
    stdout: bytes = b""
    stderr: bytes = b""
    error: str | None = None
    """Why the session failed, when the node or API said so."""

    @property
    def output(self) -> str:
        """stdout then stderr, decoded (with a TTY everything is in stdout)."""
        return (self.stdout + self.stderr).decode("utf-8", "replace")


@dataclass
class _Collector:
    result: ExecResult = field(default_factory=lambda: ExecResult(None))
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)

    def feed(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            if message[:1] == bytes((STDERR,)):
                self.err.extend(message[1:])
            elif message[:1] == bytes((STDOUT,)):
                self.out.extend(message[1:])
            return
        control = _control(message)
        if isinstance(control.get("exit"), int):
            self.result.exit_code = control["exit"]
        if control.get("error"):
            self.result.error = str(control["error"])

    def done(self) -> ExecResult:
        self.result.stdout, self.result.stderr = bytes(self.out), bytes(self.err)
        return self.result


def _control(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- plumbing


def shell_url(
    server: str,
    name: str,
    *,
    argv: list[str] | None,
    tty: bool,
    zone: str | None,
    workspace: str | None,
) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    params: list[tuple[str, str]] = [("cmd", a) for a in argv or []]
    if tty:
        params.append(("tty", "true"))
    params += [(k, v) for k, v in (("zone", zone), ("workspace", workspace)) if v]
    query = f"?{urlencode(params)}" if params else ""
    return f"{base}/v1/containers/{quote(name, safe='')}/shell{query}"


def ssl_context(server: str, verify: bool | str) -> ssl.SSLContext | None:
    """The TLS settings of an ``https`` API for the WebSocket (None for ``http``)."""
    if not server.startswith("https://"):
        return None
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()


def handshake_error(exc: Exception, server: str) -> DoraError:
    """A refused or failed WebSocket upgrade as the typed error of the HTTP API."""
    from websockets.exceptions import InvalidStatus

    if isinstance(exc, InvalidStatus):
        response = exc.response
        try:
            body: Any = json.loads(response.body or b"")
        except ValueError:
            body = None
        return error_for(response.status_code, body, response.headers.get("Retry-After"))
    return ConnectionFailed(f"cannot open a shell through {server}: {type(exc).__name__}: {exc}")


def logs_params(
    *,
    zone: str | None,
    workspace: str | None,
    follow: bool,
    tail: int | str | None,
    since: float | str | None,
    timestamps: bool,
) -> dict[str, Any]:
    params: dict[str, Any] = {"follow": follow, "timestamps": timestamps}
    if tail is not None:
        params["tail"] = str(tail)
    if since is not None:
        params["since"] = since if isinstance(since, float | int) else parse_since(since)
    params.update({k: v for k, v in (("zone", zone), ("workspace", workspace)) if v})
    return params


def _logs_path(name: str) -> str:
    return f"/v1/containers/{quote(name, safe='')}/logs"


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def _error_from(response: httpx.Response) -> DoraError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return error_for(response.status_code, body, response.headers.get("retry-after"))


# --------------------------------------------------------------------------- sync


def log_chunks(client: Client, name: str, **options: Any) -> Iterator[bytes]:
    """The raw bytes of a container's logs as they arrive (options: `logs_params`)."""
    import httpx

    from dora.client.client import DEFAULT_TIMEOUT

    http: httpx.Client = client._http
    timeout = httpx.Timeout(DEFAULT_TIMEOUT, read=None)
    try:
        with http.stream(
            "GET", _logs_path(name), params=logs_params(**options), timeout=timeout
        ) as response:
            if not response.is_success:
                response.read()
                raise _error_from(response)
            yield from response.iter_raw()
    except httpx.HTTPError as exc:
        raise ConnectionFailed(f"log stream from {client.server} failed: {exc}") from None


def log_lines(client: Client, name: str, **options: Any) -> Iterator[str]:
    return _lines(log_chunks(client, name, **options))


def run(
    client: Client,
    name: str,
    argv: list[str],
    *,
    zone: str | None = None,
    workspace: str | None = None,
    stdin: bytes | None = None,
    tty: bool = False,
    timeout: float | None = None,
) -> ExecResult:
    """Run `argv` in the container, feed it `stdin`, wait for it to end."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = shell_url(client.server, name, argv=argv, tty=tty, zone=zone, workspace=workspace)
    headers = {"Authorization": client._http.headers.get("authorization", "")}
    collector = _Collector()
    try:
        with connect(
            url,
            additional_headers=headers,
            ssl=ssl_context(client.server, client._verify),
            open_timeout=OPEN_TIMEOUT_S,
            compression=None,
            max_size=None,
        ) as ws:
            if stdin:
                ws.send(frame(STDIN, stdin))
            ws.send(EOF_FRAME)
            while True:
                try:
                    message = ws.recv(timeout=timeout)
                except TimeoutError:
                    raise DoraError(f"{name}: {argv[0]} did not end within {timeout} s") from None
                except ConnectionClosed:
                    break
                collector.feed(message)
    except DoraError:
        raise
    except Exception as exc:
        raise handshake_error(exc, client.server) from None
    return collector.done()


# --------------------------------------------------------------------------- async


async def alog_chunks(client: AsyncClient, name: str, **options: Any) -> AsyncIterator[bytes]:
    import httpx

    from dora.client.client import DEFAULT_TIMEOUT

    http: httpx.AsyncClient = client._http
    timeout = httpx.Timeout(DEFAULT_TIMEOUT, read=None)
    try:
        async with http.stream(
            "GET", _logs_path(name), params=logs_params(**options), timeout=timeout
        ) as response:
            if not response.is_success:
                await response.aread()
                raise _error_from(response)
            async for chunk in response.aiter_raw():
                yield chunk
    except httpx.HTTPError as exc:
        raise ConnectionFailed(f"log stream from {client.server} failed: {exc}") from None


async def alog_lines(client: AsyncClient, name: str, **options: Any) -> AsyncIterator[str]:
    pending = b""
    async for chunk in alog_chunks(client, name, **options):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


async def open_shell(
    server: str,
    authorization: str,
    verify: bool | str,
    name: str,
    argv: list[str] | None,
    *,
    tty: bool,
    zone: str | None = None,
    workspace: str | None = None,
) -> AsyncConnection:
    """An open shell WebSocket (the CLI drives it interactively)."""
    from websockets.asyncio.client import connect

    url = shell_url(server, name, argv=argv, tty=tty, zone=zone, workspace=workspace)
    try:
        return await connect(
            url,
            additional_headers={"Authorization": authorization},
            ssl=ssl_context(server, verify),
            open_timeout=OPEN_TIMEOUT_S,
            compression=None,
            max_size=None,
        )
    except Exception as exc:
        raise handshake_error(exc, server) from None


async def arun(
    client: AsyncClient,
    name: str,
    argv: list[str],
    *,
    zone: str | None = None,
    workspace: str | None = None,
    stdin: bytes | None = None,
    tty: bool = False,
) -> ExecResult:
    from websockets.exceptions import ConnectionClosed

    ws = await open_shell(
        client.server,
        client._http.headers.get("authorization", ""),
        client._verify,
        name,
        argv,
        tty=tty,
        zone=zone,
        workspace=workspace,
    )
    collector = _Collector()
    try:
        if stdin:
            await ws.send(frame(STDIN, stdin))
        await ws.send(EOF_FRAME)
        async for message in ws:
            collector.feed(message)
    except ConnectionClosed:
        pass
    finally:
        await ws.close()
    return collector.done()
