"""Every API call as a plain description (method, path, query, body, reply model), so
the sync and async clients share one definition of the API and differ only in how
they send it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from dora.api.schemas import (
    ApplyBatchOut,
    ApplyResult,
    Assignments,
    CloneIn,
    CloneOut,
    ContainerTokenOut,
    CreditsOut,
    DeleteResult,
    EventList,
    FileList,
    Manifest,
    NodeReport,
    ReportOut,
    ResourceList,
    ResourceOut,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    UploadCreate,
    UploadOut,
    VersionInfo,
    VersionList,
    WhoAmI,
)

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    reply: type[T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    """Overrides the client's read timeout (long-polls wait on purpose)."""
    content: bytes | None = None
    """A raw request body (instead of `body` as JSON)."""


def _scope(zone: str | None, workspace: str | None, **more: Any) -> dict[str, Any]:
    params = {"zone": zone, "workspace": workspace, **more}
    return {k: v for k, v in params.items() if v not in (None, False)}


def version() -> Call[VersionInfo]:
    return Call("GET", "/v1/version", VersionInfo)


def whoami() -> Call[WhoAmI]:
    return Call("GET", "/v1/whoami", WhoAmI)


def apply(doc: dict[str, Any], zone: str | None, workspace: str | None) -> Call[ApplyResult]:
    return Call("POST", "/v1/apply", ApplyResult, _scope(zone, workspace), doc)


def apply_many(
    docs: list[dict[str, Any]], zone: str | None, workspace: str | None
) -> Call[ApplyBatchOut]:
    return Call("POST", "/v1/apply-many", ApplyBatchOut, _scope(zone, workspace), docs)


def list_(
    kind: str, zone: str | None, workspace: str | None, all_workspaces: bool
) -> Call[ResourceList]:
    return Call(
        "GET", f"/v1/resources/{kind}", ResourceList, _scope(zone, workspace, all=all_workspaces)
    )


def get(kind: str, name: str, zone: str | None, workspace: str | None) -> Call[ResourceOut]:
    return Call("GET", f"/v1/resources/{kind}/{name}", ResourceOut, _scope(zone, workspace))


def delete(
    kind: str, name: str, zone: str | None, workspace: str | None, cascade: bool
) -> Call[DeleteResult]:
    return Call(
        "DELETE",
        f"/v1/resources/{kind}/{name}",
        DeleteResult,
        _scope(zone, workspace, cascade=cascade),
    )


def events(
    kind: str, name: str, zone: str | None, workspace: str | None, limit: int
) -> Call[EventList]:
    return Call(
        "GET",
        f"/v1/resources/{kind}/{name}/events",
        EventList,
        _scope(zone, workspace, limit=limit),
    )


def versions(kind: str, name: str, zone: str | None, workspace: str | None) -> Call[VersionList]:
    return Call(
        "GET", f"/v1/resources/{kind}/{name}/versions", VersionList, _scope(zone, workspace)
    )


def pause(name: str, zone: str | None, workspace: str | None, paused: bool) -> Call[ResourceOut]:
    verb = "pause" if paused else "resume"
    return Call("POST", f"/v1/workloads/{name}/{verb}", ResourceOut, _scope(zone, workspace))


def pause_container(
    name: str, zone: str | None, workspace: str | None, paused: bool
) -> Call[ResourceOut]:
    verb = "pause" if paused else "resume"
    path = f"/v1/containers/{quote(name, safe='')}/{verb}"
    return Call("POST", path, ResourceOut, _scope(zone, workspace))


def container_token(name: str, zone: str | None, workspace: str | None) -> Call[ContainerTokenOut]:
    path = f"/v1/containers/{quote(name, safe='')}/token"
    return Call("POST", path, ContainerTokenOut, _scope(zone, workspace))


def create_token(
    user: str, workspace: str, token_id: str, expires_in_s: int | None
) -> Call[TokenCreated]:
    body = TokenCreate(user=user, workspace=workspace, id=token_id, expires_in_s=expires_in_s)
    return Call("POST", "/v1/tokens", TokenCreated, body=body.model_dump(exclude_none=True))


def list_tokens(user: str | None) -> Call[TokenList]:
    return Call("GET", "/v1/tokens", TokenList, {"user": user} if user else {})


def revoke_token(jti: str) -> Call[TokenOut]:
    return Call("DELETE", f"/v1/tokens/{jti}", TokenOut)


def report(name: str, zone: str | None, agent: str, body: NodeReport) -> Call[ReportOut]:
    return Call(
        "POST",
        f"/v1/nodes/{name}/report",
        ReportOut,
        _scope(zone, None),
        body.model_dump(mode="json"),
        {"X-Dora-Agent": agent},
    )


def assignments(name: str, zone: str | None, since: str | None, wait_s: float) -> Call[Assignments]:
    params = _scope(zone, None, since=since)
    if wait_s:
        params["wait"] = wait_s
    return Call("GET", f"/v1/nodes/{name}/assignments", Assignments, params, timeout=wait_s + 30)


# ------------------------------------------------------------------ volume files


def _volume(name: str) -> str:
    return f"/v1/volumes/{quote(name, safe='')}"


def ls(volume: str, path: str, zone: str | None, workspace: str | None) -> Call[FileList]:
    return Call("GET", f"{_volume(volume)}/files", FileList, _scope(zone, workspace, path=path))


def manifest(volume: str, path: str, zone: str | None, workspace: str | None) -> Call[Manifest]:
    return Call("GET", f"{_volume(volume)}/manifest", Manifest, _scope(zone, workspace, path=path))


def download_path(volume: str) -> str:
    """``GET`` it with ``path`` (and zone/workspace): a tar archive, streamed."""
    return f"{_volume(volume)}/download"


def begin_upload(
    volume: str, path: str, size: int, mtime: float, zone: str | None, workspace: str | None
) -> Call[UploadOut]:
    body = UploadCreate(path=path, size=size, mtime=mtime).model_dump()
    return Call("POST", f"{_volume(volume)}/uploads", UploadOut, _scope(zone, workspace), body)


def upload_chunk(
    volume: str,
    upload_id: str,
    offset: int,
    data: bytes,
    zone: str | None,
    workspace: str | None,
) -> Call[UploadOut]:
    return Call(
        "PATCH",
        f"{_volume(volume)}/uploads/{upload_id}",
        UploadOut,
        _scope(zone, workspace),
        headers={
            "Upload-Offset": str(offset),
            "Content-Type": "application/octet-stream",
        },
        content=data,
        timeout=600,
    )


def clone_workspace(source: str, name: str, zone: str | None) -> Call[CloneOut]:
    body = CloneIn(name=name).model_dump()
    return Call("POST", f"/v1/workspaces/{source}/clone", CloneOut, _scope(zone, None), body)


def credits(zone: str | None, user: str | None) -> Call[CreditsOut]:
    return Call("GET", "/v1/users/me/credits", CreditsOut, _scope(zone, None, user=user))
