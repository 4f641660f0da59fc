"""Resumable uploads into a volume.

Uploads (own minimal protocol, TUS-like):

``POST …/uploads {path, size, mtime}`` → ``{id, offset}``
    ``id`` is a hash of (zone, workspace, volume, path, size, mtime): asking again for
    the same file gives the same id and the offset the server holds, so an
    interrupted upload resumes. Partial data lives in the volume's hidden
    ``.dora-uploads/<id>.part`` (any API replica can continue it).
``PATCH …/uploads/{id}`` with ``Upload-Offset: <offset>`` and the next bytes
    Streamed to disk as it arrives; the reply holds the new offset. The last byte
    completes the upload: the file gets its mtime and is renamed into place
    atomically (readers see the old file or the new one, never half of one).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect

from dora.api.context import ApiContext
from dora.api.errors import ApiError, conflict, not_found
from dora.api.schemas import (
    UploadCreate,
    UploadOut,
)
from dora.api.services.volume_files import (
    VolumeDir,
    open_root,
    os_error,
)
from dora.api.services.volume_paths import (
    UPLOAD_DIR,
    lstat_at,
    open_child_dir,
    open_dir,
    parse_path,
    shown,
    symlink_refused,
)

log = logging.getLogger("dora.api.volumes")

WRITE_BATCH = 1024 * 1024
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
STALE_UPLOAD_S = 7 * 86400.0
"""Partial uploads untouched this long are removed (when the next upload starts)."""

# ------------------------------------------------------------------------- uploads


def upload_id(volume: VolumeDir, path: tuple[str, ...], size: int, mtime: float) -> str:
    """Deterministic: the same file to the same place gets the same id."""
    key = json.dumps(
        [volume.zone, volume.workspace, volume.name, "/".join(path), size, repr(float(mtime))]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class _Upload:
    """An upload being written: its descriptors, all owned by this object."""

    id: str
    parts: tuple[str, ...]
    size: int
    mtime: float
    root: int
    uploads: int
    part: int

    def close(self) -> None:
        for fd in (self.part, self.uploads, self.root):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def offset(self) -> int:
        return os.fstat(self.part).st_size

    def out(self, complete: bool = False) -> UploadOut:
        return UploadOut(
            id=self.id,
            path="/".join(self.parts),
            size=self.size,
            offset=self.size if complete else self.offset,
            complete=complete,
        )


def _lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise conflict("another request is writing this upload right now; retry shortly") from None


def _open_part(uploads: int, upload: str, *, create: bool) -> int:
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(f"{upload}.part", flags, 0o600, dir_fd=uploads)
    except FileNotFoundError:
        raise not_found(f"no upload {upload} in this volume (start it again with POST)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_refused((UPLOAD_DIR, f"{upload}.part")) from None
        raise os_error(exc, "write the upload") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise conflict(f"{UPLOAD_DIR}/{upload}.part is not a regular file")
    return fd


def _write_meta(uploads: int, upload: str, meta: dict[str, Any]) -> None:
    tmp = f"{upload}.json.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=uploads,
    )
    try:
        os.write(fd, json.dumps(meta).encode())
    finally:
        os.close(fd)
    os.rename(tmp, f"{upload}.json", src_dir_fd=uploads, dst_dir_fd=uploads)


def _read_meta(uploads: int, upload: str) -> dict[str, Any]:
    try:
        fd = os.open(f"{upload}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=uploads)
    except OSError:
        raise not_found(f"no upload {upload} in this volume (start it again with POST)") from None
    try:
        data = json.loads(os.read(fd, 65536) or b"{}")
    except ValueError:
        data = {}
    finally:
        os.close(fd)
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        raise not_found(f"upload {upload} has lost its description; start it again with POST")
    return data


def _check_destination(parent: int, parts: tuple[str, ...]) -> os.stat_result | None:
    st = lstat_at(parent, parts[-1])
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise symlink_refused(parts)
    if stat.S_ISDIR(st.st_mode):
        raise conflict(f"{shown(parts)!r} is a folder in this volume; cannot write a file there")
    if not stat.S_ISREG(st.st_mode):
        raise conflict(f"{shown(parts)!r} is not a regular file; cannot replace it")
    return st


def _same(st: os.stat_result, size: int, mtime: float) -> bool:
    return st.st_size == size and abs(st.st_mtime - mtime) < 1e-3


def _finish(up: _Upload) -> UploadOut:
    """Complete `up` (the caller holds its lock): mtime, then an atomic rename."""
    os.fsync(up.part)
    os.fchmod(up.part, 0o644)
    os.utime(up.part, (up.mtime, up.mtime))  # float seconds, as `stat` gave them
    parent = open_dir(up.root, up.parts[:-1], create=True)
    try:
        _check_destination(parent, up.parts)
        os.rename(f"{up.id}.part", up.parts[-1], src_dir_fd=up.uploads, dst_dir_fd=parent)
    finally:
        os.close(parent)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{up.id}.json", dir_fd=up.uploads)
    return up.out(complete=True)


def _begin_sync(volume: VolumeDir, body: UploadCreate, max_file: int) -> UploadOut:
    parts = parse_path(body.path, root_ok=False)
    if body.size > max_file:
        raise ApiError(
            413,
            "too_large",
            f"size: {body.size} bytes is more than this server accepts per file ({max_file})",
            field="size",
        )
    upload = upload_id(volume, parts, body.size, body.mtime)
    root = open_root(volume, create=True)
    assert root is not None
    try:
        parent = open_dir(root, parts[:-1], create=True)
        try:
            existing = _check_destination(parent, parts)
        finally:
            os.close(parent)
        uploads = open_child_dir(root, UPLOAD_DIR, (UPLOAD_DIR,), create=True)
    except BaseException:
        os.close(root)
        raise
    try:
        done = existing is not None and _same(existing, body.size, body.mtime)
        if done and lstat_at(uploads, f"{upload}.part") is None:  # done already
            os.close(uploads)
            os.close(root)
            return UploadOut(
                id=upload, path="/".join(parts), size=body.size, offset=body.size, complete=True
            )
        part = _open_part(uploads, upload, create=True)
    except BaseException:
        os.close(uploads)
        os.close(root)
        raise
    up = _Upload(upload, parts, body.size, body.mtime, root, uploads, part)
    try:
        _sweep(uploads, keep=upload)
        _lock(part)
        _write_meta(
            uploads, upload, {"path": "/".join(parts), "size": body.size, "mtime": body.mtime}
        )
        offset = up.offset
        if offset > body.size:  # cannot happen through this API; start over
            os.ftruncate(part, 0)
            offset = 0
        if offset == body.size:
            return _finish(up)
        return up.out()
    except OSError as exc:
        raise os_error(exc, "start the upload") from None
    finally:
        up.close()


def _sweep(uploads: int, *, keep: str, now: float | None = None) -> None:
    """Remove abandoned partial uploads (untouched for `STALE_UPLOAD_S`)."""
    limit = (time.time() if now is None else now) - STALE_UPLOAD_S
    with os.scandir(uploads) as entries:
        for entry in entries:
            if entry.name.startswith(keep):
                continue
            with contextlib.suppress(OSError):  # gone already, or a folder: leave it
                if entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.name, dir_fd=uploads)


async def begin_upload(ctx: ApiContext, volume: VolumeDir, body: UploadCreate) -> UploadOut:
    return await asyncio.to_thread(_begin_sync, volume, body, ctx.settings.upload_max_file)


def _open_upload(volume: VolumeDir, upload: str, offset: int) -> _Upload:
    if not UPLOAD_ID.fullmatch(upload):
        raise not_found(f"no upload {upload!r} in this volume")
    root = open_root(volume, create=False)
    if root is None:
        raise not_found(f"no upload {upload} in this volume (start it again with POST)")
    uploads = part = -1
    try:
        uploads = open_child_dir(root, UPLOAD_DIR, (UPLOAD_DIR,))
        meta = _read_meta(uploads, upload)
        parts = parse_path(meta["path"], root_ok=False)
        part = _open_part(uploads, upload, create=False)
        up = _Upload(
            upload,
            parts,
            int(meta.get("size") or 0),
            float(meta.get("mtime") or 0),
            root,
            uploads,
            part,
        )
    except ApiError as exc:
        for fd in (part, uploads, root):
            if fd >= 0:
                os.close(fd)
        if exc.status == 404 and exc.message.startswith("no folder"):
            raise not_found(f"no upload {upload} in this volume") from None
        raise
    try:
        _lock(part)
        held = up.offset
        if offset != held:
            raise ApiError(
                409,
                "offset_mismatch",
                f"Upload-Offset is {offset} but the server "
                f"holds {held} bytes of this upload; send from {held}",
                field="Upload-Offset",
                headers={"Upload-Offset": str(held)},
            )
    except BaseException:
        up.close()
        raise
    return up


async def write_chunk(
    ctx: ApiContext,
    volume: VolumeDir,
    upload: str,
    offset: int,
    length: int | None,
    body: AsyncIterator[bytes],
) -> UploadOut:
    """Append the request body at `offset` (streamed to disk in batches)."""
    up = await asyncio.to_thread(_open_upload, volume, upload, offset)
    try:
        room = min(up.size - offset, ctx.settings.upload_max_chunk)
        if length is not None and length > room:
            raise _too_much(up, offset, room)
        position, batch = offset, bytearray()
        try:
            async for piece in body:
                if position + len(batch) + len(piece) - offset > room:
                    await asyncio.to_thread(os.ftruncate, up.part, offset)
                    raise _too_much(up, offset, room)
                batch += piece
                if len(batch) >= WRITE_BATCH:
                    position += await asyncio.to_thread(_pwrite, up.part, bytes(batch), position)
                    batch.clear()
        except ClientDisconnect:  # keep what arrived: the next try resumes from there
            log.info("event=upload_interrupted id=%s at=%d", upload, position + len(batch))
        if batch:
            position += await asyncio.to_thread(_pwrite, up.part, bytes(batch), position)
        if position == up.size:
            return await asyncio.to_thread(_finish, up)
        return up.out()
    except OSError as exc:
        raise os_error(exc, "write the upload") from None
    finally:
        await asyncio.to_thread(up.close)


def _pwrite(fd: int, data: bytes, position: int) -> int:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, position)
        view, position = view[n:], position + n
    return len(data)


def _too_much(up: _Upload, offset: int, room: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"body: at most {room} bytes may be sent at offset "
        f"{offset} (file size {up.size}, chunk limit)",
        field="body",
    )
