"""Sync and async clients of the Dora API: one typed method per API call.

    from dora.client import Client

    with Client("http://127.0.0.1:3000", token) as dora:
        dora.apply(document)
        for wk in dora.list("wk"):
            print(wk.name, wk.status)

Errors are typed (`NotFound`, `Forbidden`, `Invalid` with ``.field``, …; see
`dora.client.errors`). A GET, PUT or DELETE answered 503 with a Retry-After of at
most 5 s (the server's state store was busy) is sent again after that wait, twice at
most; nothing else is retried. TLS: pass ``verify=False`` for a self-signed API certificate
you trust, or ``verify="/path/ca.pem"``.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import os
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from pydantic import BaseModel

from dora import __version__
from dora.api.schemas import (
    ApplyBatchOut,
    ApplyResult,
    Assignments,
    CloneOut,
    ContainerTokenOut,
    CreditsOut,
    DeleteResult,
    EventOut,
    FileEntry,
    Manifest,
    NodeReport,
    ReportOut,
    ResourceOut,
    TokenCreated,
    TokenOut,
    UploadOut,
    VersionInfo,
    VersionOut,
    WhoAmI,
)
from dora.client import calls
from dora.client.calls import Call
from dora.client.errors import ConnectionFailed, DoraError, error_for
from dora.client.exec import ExecResult

if TYPE_CHECKING:
    from dora.client.files import DownloadSummary, Progress, UploadSummary

if "httpx" not in sys.modules:
    # httpx's package init imports its command-line tool (click, rich.syntax, pygments)
    # just to expose `httpx.main`, which the SDK never uses: that is about half of
    # httpx's import time, paid by every `dora` command. A None entry makes that one
    # import fail, and httpx then defines a stub `main` instead.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx

T = TypeVar("T", bound=BaseModel)

DEFAULT_TIMEOUT = 30.0


def _headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"dora-client/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _request_kwargs(call: Call[Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"params": call.params, "headers": call.headers}
    if call.content is not None:
        kwargs["content"] = call.content
    elif call.body is not None:
        kwargs["json"] = call.body
    if call.timeout is not None:
        kwargs["timeout"] = httpx.Timeout(DEFAULT_TIMEOUT, read=call.timeout)
    return kwargs


RETRIES = 2
"""Times an idempotent request is sent again after a 503 whose Retry-After is at
most `RETRY_AFTER_MAX_S` (the server's state store was busy for a moment)."""
RETRY_AFTER_MAX_S = 5.0
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


def _retry_in(call: Call[Any], response: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before sending `call` again, or None to take this answer."""
    if response.status_code != 503 or call.method not in IDEMPOTENT or attempt >= RETRIES:
        return None
    after = response.headers.get("retry-after", "")
    if not after.isdigit() or float(after) > RETRY_AFTER_MAX_S:
        return None
    return float(after)


def _parse(call: Call[T], response: httpx.Response) -> T:
    if response.is_success:
        return call.reply.model_validate(response.json())
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    raise error_for(response.status_code, body, response.headers.get("retry-after"))


def _tls_verify(server: str, verify: bool | str) -> bool | ssl.SSLContext:
    """What httpx needs to check the server's certificate.

    Plain-HTTP servers need no checks: skip loading the CA bundle (tens of milliseconds
    at every start; redirects are not followed, so the client never ends up on TLS).
    A path is a CA bundle file (or a folder of CA certificates) to trust.
    """
    if server.startswith("http://") or verify is False:
        return False
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return verify


def _unreachable(base_url: str, exc: httpx.HTTPError) -> DoraError:
    return ConnectionFailed(f"cannot reach the Dora API at {base_url}: {exc}")


class Client:
    """Blocking client (the CLI uses it)."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = server.rstrip("/")
        self._verify = verify
        self._http = httpx.Client(
            base_url=self.server,
            headers=_headers(token),
            verify=_tls_verify(self.server, verify),
            timeout=timeout,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        for attempt in itertools.count():
            try:
                response = self._http.request(call.method, call.path, **_request_kwargs(call))
            except httpx.HTTPError as exc:
                raise _unreachable(self.server, exc) from None
            wait = _retry_in(call, response, attempt)
            if wait is None:
                break
            time.sleep(wait)
        return _parse(call, response)

    def version(self) -> VersionInfo:
        return self.call(calls.version())

    def whoami(self) -> WhoAmI:
        return self.call(calls.whoami())

    def apply(
        self, doc: dict[str, Any], *, zone: str | None = None, workspace: str | None = None
    ) -> ApplyResult:
        return self.call(calls.apply(doc, zone, workspace))

    def apply_many(
        self,
        docs: builtins.list[dict[str, Any]],
        *,
        zone: str | None = None,
        workspace: str | None = None,
    ) -> ApplyBatchOut:
        return self.call(calls.apply_many(docs, zone, workspace))

    def list(
        self,
        kind: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        all_workspaces: bool = False,
    ) -> builtins.list[ResourceOut]:
        return self.call(calls.list_(kind, zone, workspace, all_workspaces)).items

    def get(
        self, kind: str, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return self.call(calls.get(kind, name, zone, workspace))

    def delete(
        self,
        kind: str,
        name: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        cascade: bool = False,
    ) -> DeleteResult:
        return self.call(calls.delete(kind, name, zone, workspace, cascade))

    def events(
        self,
        kind: str,
        name: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        limit: int = 50,
    ) -> builtins.list[EventOut]:
        return self.call(calls.events(kind, name, zone, workspace, limit)).items

    def versions(
        self, kind: str, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> builtins.list[VersionOut]:
        return self.call(calls.versions(kind, name, zone, workspace)).items

    def pause(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return self.call(calls.pause(name, zone, workspace, True))

    def resume(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return self.call(calls.pause(name, zone, workspace, False))

    def pause_container(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        """Freeze one container's processes (``docker pause``); it keeps its GPUs and
        CPUs. (`pause` stops a whole workload and frees them.)"""
        return self.call(calls.pause_container(name, zone, workspace, True))

    def resume_container(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return self.call(calls.pause_container(name, zone, workspace, False))

    def container_token(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ContainerTokenOut:
        """A single-use token that opens this container's shell WebSocket as
        ``?token=`` (for clients that cannot send an Authorization header)."""
        return self.call(calls.container_token(name, zone, workspace))

    def create_token(
        self, user: str, workspace: str, token_id: str = "1", *, expires_in_s: int | None = None
    ) -> TokenCreated:
        return self.call(calls.create_token(user, workspace, token_id, expires_in_s))

    def list_tokens(self, user: str | None = None) -> builtins.list[TokenOut]:
        return self.call(calls.list_tokens(user)).items

    def revoke_token(self, jti: str) -> TokenOut:
        return self.call(calls.revoke_token(jti))

    def report(
        self, node: str, body: NodeReport, *, agent: str, zone: str | None = None
    ) -> ReportOut:
        return self.call(calls.report(node, zone, agent, body))

    def assignments(
        self, node: str, *, zone: str | None = None, since: str | None = None, wait_s: float = 0
    ) -> Assignments:
        return self.call(calls.assignments(node, zone, since, wait_s))

    # -------------------------------------------------------------- volume files
    def ls(
        self, volume: str, path: str = "", *, zone: str | None = None, workspace: str | None = None
    ) -> builtins.list[FileEntry]:
        """The entries of a folder of `volume` (``path`` relative to its root)."""
        from dora.client.files import volume_path

        return self.call(calls.ls(volume, volume_path(path), zone, workspace)).items

    def manifest(
        self, volume: str, path: str = "", *, zone: str | None = None, workspace: str | None = None
    ) -> Manifest:
        """Every file below a folder of `volume`, with size and mtime."""
        from dora.client.files import volume_path

        return self.call(calls.manifest(volume, volume_path(path), zone, workspace))

    def begin_upload(
        self,
        volume: str,
        path: str,
        size: int,
        mtime: float,
        *,
        zone: str | None = None,
        workspace: str | None = None,
    ) -> UploadOut:
        return self.call(calls.begin_upload(volume, path, size, mtime, zone, workspace))

    def upload_chunk(
        self,
        volume: str,
        upload_id: str,
        offset: int,
        data: bytes,
        *,
        zone: str | None = None,
        workspace: str | None = None,
    ) -> UploadOut:
        return self.call(calls.upload_chunk(volume, upload_id, offset, data, zone, workspace))

    def upload(
        self,
        source: str | os.PathLike[str],
        volume: str,
        dest: str = "",
        *,
        chunk: int | None = None,
        zone: str | None = None,
        workspace: str | None = None,
        progress: Progress | None = None,
    ) -> UploadSummary:
        """A file to ``dest/<its name>``, or a folder's contents to ``dest/``; resumes
        unfinished files (see `dora.client.files`)."""
        from dora.client.files import DEFAULT_CHUNK, upload

        return upload(
            self,
            os.fspath(source),
            volume,
            dest,
            chunk=chunk or DEFAULT_CHUNK,
            zone=zone,
            workspace=workspace,
            progress=progress,
        )

    def download(
        self,
        volume: str,
        path: str,
        dest: str | os.PathLike[str],
        *,
        zone: str | None = None,
        workspace: str | None = None,
        progress: Progress | None = None,
    ) -> DownloadSummary:
        """Extract a folder's contents (or one file) of `volume` into folder `dest`."""
        from dora.client.files import download

        return download(
            self, volume, path, os.fspath(dest), zone=zone, workspace=workspace, progress=progress
        )

    def clone_workspace(
        self, name: str, *, source: str | None = None, zone: str | None = None
    ) -> CloneOut:
        """New workspace ``<source>.<name>`` (source: your default workspace) with
        copies of your grants on the source."""
        return self.call(calls.clone_workspace(source or self.whoami().workspace, name, zone))

    def credits(self, *, zone: str | None = None, user: str | None = None) -> CreditsOut:
        """Your weekly budget and spending in `zone` (another `user`'s: admins)."""
        return self.call(calls.credits(zone, user))

    def logs(
        self,
        name: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        follow: bool = False,
        tail: int | str | None = None,
        since: float | str | None = None,
        timestamps: bool = False,
    ) -> Iterator[str]:
        """A container's output, line by line; `follow` streams until it stops.
        `since`: unix seconds, or text such as ``10m`` or ``2024-05-01T10:00:00Z``."""
        from dora.client.exec import log_lines

        return log_lines(
            self,
            name,
            zone=zone,
            workspace=workspace,
            follow=follow,
            tail=tail,
            since=since,
            timestamps=timestamps,
        )

    def exec(
        self,
        name: str,
        argv: builtins.list[str],
        *,
        zone: str | None = None,
        workspace: str | None = None,
        stdin: bytes | None = None,
        tty: bool = False,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run `argv` in a running container; its exit code and output."""
        from dora.client.exec import run

        return run(
            self,
            name,
            argv,
            zone=zone,
            workspace=workspace,
            stdin=stdin,
            tty=tty,
            timeout=timeout,
        )


class AsyncClient:
    """Asyncio client (node agents, the SDK's async users)."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = server.rstrip("/")
        self._verify = verify
        self._http = httpx.AsyncClient(
            base_url=self.server,
            headers=_headers(token),
            verify=_tls_verify(self.server, verify),
            timeout=timeout,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call[T]) -> T:
        for attempt in itertools.count():
            try:
                response = await self._http.request(call.method, call.path, **_request_kwargs(call))
            except httpx.HTTPError as exc:
                raise _unreachable(self.server, exc) from None
            wait = _retry_in(call, response, attempt)
            if wait is None:
                break
            await asyncio.sleep(wait)
        return _parse(call, response)

    async def version(self) -> VersionInfo:
        return await self.call(calls.version())

    async def whoami(self) -> WhoAmI:
        return await self.call(calls.whoami())

    async def apply(
        self, doc: dict[str, Any], *, zone: str | None = None, workspace: str | None = None
    ) -> ApplyResult:
        return await self.call(calls.apply(doc, zone, workspace))

    async def apply_many(
        self,
        docs: builtins.list[dict[str, Any]],
        *,
        zone: str | None = None,
        workspace: str | None = None,
    ) -> ApplyBatchOut:
        return await self.call(calls.apply_many(docs, zone, workspace))

    async def list(
        self,
        kind: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        all_workspaces: bool = False,
    ) -> builtins.list[ResourceOut]:
        return (await self.call(calls.list_(kind, zone, workspace, all_workspaces))).items

    async def get(
        self, kind: str, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return await self.call(calls.get(kind, name, zone, workspace))

    async def delete(
        self,
        kind: str,
        name: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        cascade: bool = False,
    ) -> DeleteResult:
        return await self.call(calls.delete(kind, name, zone, workspace, cascade))

    async def events(
        self,
        kind: str,
        name: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        limit: int = 50,
    ) -> builtins.list[EventOut]:
        return (await self.call(calls.events(kind, name, zone, workspace, limit))).items

    async def versions(
        self, kind: str, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> builtins.list[VersionOut]:
        return (await self.call(calls.versions(kind, name, zone, workspace))).items

    async def pause(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return await self.call(calls.pause(name, zone, workspace, True))

    async def resume(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return await self.call(calls.pause(name, zone, workspace, False))

    async def pause_container(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return await self.call(calls.pause_container(name, zone, workspace, True))

    async def resume_container(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ResourceOut:
        return await self.call(calls.pause_container(name, zone, workspace, False))

    async def container_token(
        self, name: str, *, zone: str | None = None, workspace: str | None = None
    ) -> ContainerTokenOut:
        return await self.call(calls.container_token(name, zone, workspace))

    async def create_token(
        self, user: str, workspace: str, token_id: str = "1", *, expires_in_s: int | None = None
    ) -> TokenCreated:
        return await self.call(calls.create_token(user, workspace, token_id, expires_in_s))

    async def list_tokens(self, user: str | None = None) -> builtins.list[TokenOut]:
        return (await self.call(calls.list_tokens(user))).items

    async def revoke_token(self, jti: str) -> TokenOut:
        return await self.call(calls.revoke_token(jti))

    async def report(
        self, node: str, body: NodeReport, *, agent: str, zone: str | None = None
    ) -> ReportOut:
        return await self.call(calls.report(node, zone, agent, body))

    async def assignments(
        self, node: str, *, zone: str | None = None, since: str | None = None, wait_s: float = 0
    ) -> Assignments:
        return await self.call(calls.assignments(node, zone, since, wait_s))

    # -------------------------------------------------------------- volume files
    async def ls(
        self, volume: str, path: str = "", *, zone: str | None = None, workspace: str | None = None
    ) -> builtins.list[FileEntry]:
        from dora.client.files import volume_path

        return (await self.call(calls.ls(volume, volume_path(path), zone, workspace))).items

    async def manifest(
        self, volume: str, path: str = "", *, zone: str | None = None, workspace: str | None = None
    ) -> Manifest:
        from dora.client.files import volume_path

        return await self.call(calls.manifest(volume, volume_path(path), zone, workspace))

    async def begin_upload(
        self,
        volume: str,
        path: str,
        size: int,
        mtime: float,
        *,
        zone: str | None = None,
        workspace: str | None = None,
    ) -> UploadOut:
        return await self.call(calls.begin_upload(volume, path, size, mtime, zone, workspace))

    async def upload_chunk(
        self,
        volume: str,
        upload_id: str,
        offset: int,
        data: bytes,
        *,
        zone: str | None = None,
        workspace: str | None = None,
    ) -> UploadOut:
        return await self.call(calls.upload_chunk(volume, upload_id, offset, data, zone, workspace))

    async def upload(
        self,
        source: str | os.PathLike[str],
        volume: str,
        dest: str = "",
        *,
        chunk: int | None = None,
        zone: str | None = None,
        workspace: str | None = None,
        progress: Progress | None = None,
    ) -> UploadSummary:
        """As `Client.upload` (file reads and requests run in a worker thread)."""
        with self._blocking_twin() as twin:
            return await asyncio.to_thread(
                twin.upload,
                source,
                volume,
                dest,
                chunk=chunk,
                zone=zone,
                workspace=workspace,
                progress=progress,
            )

    async def download(
        self,
        volume: str,
        path: str,
        dest: str | os.PathLike[str],
        *,
        zone: str | None = None,
        workspace: str | None = None,
        progress: Progress | None = None,
    ) -> DownloadSummary:
        """As `Client.download` (the extraction runs in a worker thread)."""
        with self._blocking_twin() as twin:
            return await asyncio.to_thread(
                twin.download,
                volume,
                path,
                dest,
                zone=zone,
                workspace=workspace,
                progress=progress,
            )

    def _blocking_twin(self) -> Client:
        """A blocking client to the same server, with the same token and TLS checks."""
        twin = Client(self.server, verify=self._verify)
        twin._http.headers.update(self._http.headers)
        return twin

    async def clone_workspace(
        self, name: str, *, source: str | None = None, zone: str | None = None
    ) -> CloneOut:
        """New workspace ``<source>.<name>`` (source: your default workspace) with
        copies of your grants on the source."""
        source = source or (await self.whoami()).workspace
        return await self.call(calls.clone_workspace(source, name, zone))

    async def credits(self, *, zone: str | None = None, user: str | None = None) -> CreditsOut:
        """Your weekly budget and spending in `zone` (another `user`'s: admins)."""
        return await self.call(calls.credits(zone, user))

    def logs(
        self,
        name: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        follow: bool = False,
        tail: int | str | None = None,
        since: float | str | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[str]:
        """A container's output, line by line (``async for``)."""
        from dora.client.exec import alog_lines

        return alog_lines(
            self,
            name,
            zone=zone,
            workspace=workspace,
            follow=follow,
            tail=tail,
            since=since,
            timestamps=timestamps,
        )

    async def exec(
        self,
        name: str,
        argv: builtins.list[str],
        *,
        zone: str | None = None,
        workspace: str | None = None,
        stdin: bytes | None = None,
        tty: bool = False,
    ) -> ExecResult:
        """Run `argv` in a running container; its exit code and output."""
        from dora.client.exec import arun

        return await arun(self, name, argv, zone=zone, workspace=workspace, stdin=stdin, tty=tty)
