"""Volume file routes: list, manifest, download (tar) and resumable uploads.

``zone`` and ``workspace`` default to the caller's, like the resource routes; RBAC
kind ``Volume``, verbs ``Ls``, ``Sync``, ``Download`` and ``Upload`` in the volume's
scope. The protocol is described in `dora.api.services.volume_files`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx
from dora.api.schemas import ErrorOut, FileList, Manifest, UploadCreate, UploadOut
from dora.api.services import volume_download, volume_files, volume_uploads

router = APIRouter(
    prefix="/v1/volumes",
    tags=["volumes"],
    responses={
        **AUTH_RESPONSES,
        400: {"model": ErrorOut, "description": "A path that leaves the volume or is a link"},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut, "description": "No such volume, folder or upload"},
        409: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "The volume's storage is not reachable here"},
        507: {"model": ErrorOut, "description": "The volume is full"},
    },
)

NameP = Annotated[str, Path(description="the volume's name", examples=["home"])]
PathQ = Annotated[
    str,
    Query(
        max_length=4096,
        description="relative to the volume's root; '' or / is the root",
        examples=["data", "data/train.csv"],
    ),
]
ZoneQ = Annotated[str | None, Query(max_length=253, description="zone (default: yours)")]
WorkspaceQ = Annotated[str | None, Query(max_length=253, description="workspace (default: yours)")]
UploadIdP = Annotated[
    str, Path(pattern="^[0-9a-f]{32}$", description="the id `POST …/uploads` returned")
]
TAR = "application/x-tar"


@router.get("/{name}/files", summary="List a folder of a volume (Volume Ls)")
async def list_files(
    ctx: Ctx,
    caller: CallerDep,
    name: NameP,
    path: PathQ = "",
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> FileList:
    volume = await volume_files.locate(ctx, caller, name, zone=zone, workspace=workspace, verb="Ls")
    return await volume_files.list_files(volume, path)


@router.get(
    "/{name}/manifest",
    summary="Every file below a folder, with size and mtime (Volume Sync)",
)
async def manifest(
    ctx: Ctx,
    caller: CallerDep,
    name: NameP,
    path: PathQ = "",
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> Manifest:
    volume = await volume_files.locate(
        ctx, caller, name, zone=zone, workspace=workspace, verb="Sync"
    )
    return await volume_files.manifest(volume, path)


@router.get(
    "/{name}/download",
    summary="Download a file or folder as a tar archive (Volume Download)",
    description="A folder's archive holds its contents (paths relative to it), a file's "
    "holds that file. Symbolic links are stored as links, never followed.",
    response_class=StreamingResponse,
    responses={200: {"content": {TAR: {"schema": {"type": "string", "format": "binary"}}}}},
)
async def download(
    ctx: Ctx,
    caller: CallerDep,
    name: NameP,
    path: PathQ = "",
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> StreamingResponse:
    volume = await volume_files.locate(
        ctx, caller, name, zone=zone, workspace=workspace, verb="Download"
    )
    filename, chunks = await volume_download.download(volume, path)
    return StreamingResponse(
        chunks,
        media_type=TAR,
        headers={"Content-Disposition": f'attachment; filename="{_ascii(filename)}"'},
    )


@router.post(
    "/{name}/uploads",
    summary="Start or resume the upload of one file (Volume Upload)",
    description="The same path, size and mtime give the same id, and the reply says "
    "how many bytes the server already holds.",
)
async def begin_upload(
    ctx: Ctx,
    caller: CallerDep,
    name: NameP,
    body: Annotated[UploadCreate, Body()],
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> UploadOut:
    volume = await volume_files.locate(
        ctx, caller, name, zone=zone, workspace=workspace, verb="Upload"
    )
    return await volume_uploads.begin_upload(ctx, volume, body)


@router.patch(
    "/{name}/uploads/{upload_id}",
    summary="Send the next bytes of an upload (Volume Upload)",
    description="The body is raw bytes written at `Upload-Offset`, which must equal the "
    "offset the server holds (409 with the right one otherwise). The last byte "
    "completes the file: it gets its mtime and appears atomically.",
    responses={413: {"model": ErrorOut, "description": "More bytes than allowed"}},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def write_chunk(
    ctx: Ctx,
    caller: CallerDep,
    request: Request,
    name: NameP,
    upload_id: UploadIdP,
    upload_offset: Annotated[int, Header(alias="Upload-Offset", ge=0)],
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> UploadOut:
    volume = await volume_files.locate(
        ctx, caller, name, zone=zone, workspace=workspace, verb="Upload"
    )
    length = request.headers.get("content-length")
    return await volume_uploads.write_chunk(
        ctx,
        volume,
        upload_id,
        upload_offset,
        int(length) if length and length.isdigit() else None,
        request.stream(),
    )


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
