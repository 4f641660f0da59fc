"""File operations on volumes: list, manifest, download (a streamed tar) and resumable
uploads. RBAC kind ``Volume`` with verbs ``Ls``, ``Sync``, ``Download``, ``Upload``,
checked in the volume's own zone and workspace before anything is read.

Every path goes through `dora.api.services.volume_paths` (relative, no ``..``,
resolved component by component with ``O_NOFOLLOW``), so nothing outside the volume
is ever read or written. All file I/O runs in threads, never on the event loop.

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
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect

from dora.api.context import ApiContext
from dora.api.errors import ApiError, conflict, not_found
from dora.api.identity import GLOBAL, Caller
from dora.api.schemas import (
    FileEntry,
    FileList,
    Manifest,
    ManifestEntry,
    UploadCreate,
    UploadOut,
)
from dora.api.services.scope import require, resolve_scope
from dora.api.services.volume_paths import (
    UPLOAD_DIR,
    lstat_at,
    open_child_dir,
    open_dir,
    open_file,
    parse_path,
    shown,
    symlink_refused,
)
from dora.model import KINDS
from dora.model.location import volume_location
from dora.store import Key, NotFound

log = logging.getLogger("dora.api.volumes")

VOLUME = KINDS["Volume"]
MAX_LIST = 10_000
"""Entries one listing returns (``truncated`` says when there were more)."""
MAX_MANIFEST = 200_000
MAX_DEPTH = 64
"""Folder depth the manifest and downloads descend to."""
STREAM_CHUNK = 256 * 1024
STALL_S = 300.0
"""A download whose reader takes nothing for this long is abandoned."""
WRITE_BATCH = 1024 * 1024
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
STALE_UPLOAD_S = 7 * 86400.0
"""Partial uploads untouched this long are removed (when the next upload starts)."""
_OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class VolumeDir:
    zone: str
    workspace: str
    name: str
    path: str
    """The volume's directory on this host."""


# ----------------------------------------------------------------- find the volume


async def locate(
    ctx: ApiContext,
    caller: Caller,
    name: str,
    *,
    zone: str | None,
    workspace: str | None,
    verb: str,
) -> VolumeDir:
    """Authorise `verb` on the volume's scope, then find its directory on this host."""
    scope = resolve_scope(
        VOLUME, caller, ctx.settings.zone, query_zone=zone, query_workspace=workspace
    )
    require(caller, VOLUME, verb, scope.zone, scope.workspace)
    try:
        volume = await ctx.store.get(Key("Volume", scope.zone, scope.workspace, name))
    except NotFound:
        raise not_found(
            f"volume {name!r} not found in workspace {scope.workspace} (zone {scope.zone})"
        ) from None
    storage_name = str(volume.spec.get("storage") or "Local")
    storage_spec = None
    try:
        storage_spec = (await ctx.store.get(Key("Storage", scope.zone, GLOBAL, storage_name))).spec
    except NotFound:
        if storage_name != "Local":
            raise conflict(
                f"volume {name}'s storage {storage_name!r} does not exist in zone {scope.zone}"
            ) from None
    location = volume_location(scope.workspace, name, volume.spec, storage_spec)
    path = await ctx.storage_mounts.volume_dir(location)
    return VolumeDir(scope.zone, scope.workspace, name, path)


def _open_root(volume: VolumeDir, *, create: bool) -> int | None:
    """The volume's directory (None when it does not exist yet and `create` is off)."""
    try:
        return os.open(volume.path, _OPEN_FLAGS)
    except FileNotFoundError:
        if not create:
            return None
    try:
        os.makedirs(volume.path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, "create the volume's folder") from None
    return os.open(volume.path, _OPEN_FLAGS)


def _os_error(exc: OSError, doing: str) -> Exception:
    """What the client gets for a failed file operation: 403 when this host may not
    write there, 507 when the volume is full, else the error itself (a 500, logged)."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ApiError(403, "forbidden", f"the API host may not {doing}: {exc.strerror}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(507, "insufficient_storage", f"cannot {doing}: the volume is full")
    return exc


def _entry_type(mode: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return None  # sockets, FIFOs, devices: not shown


# ------------------------------------------------------------------------------ ls


def _target(root_fd: int, parts: tuple[str, ...]) -> tuple[int, os.stat_result]:
    """(descriptor of the parent folder, lstat of the last component); 404 if missing,
    400 if it is a link."""
    parent = open_dir(root_fd, parts[:-1])
    st = lstat_at(parent, parts[-1])
    if st is None:
        os.close(parent)
        raise not_found(f"nothing at {shown(parts)!r} in this volume")
    if stat.S_ISLNK(st.st_mode):
        os.close(parent)
        raise symlink_refused(parts)
    return parent, st


def _list_sync(volume: VolumeDir, path: str | None) -> FileList:
    parts = parse_path(path)
    out = FileList(volume=volume.name, path=shown(parts), items=[])
    root = _open_root(volume, create=False)
    if root is None:
        if parts:
            raise not_found(f"no folder {shown(parts)!r} in this volume (it is empty)")
        return out
    try:
        if parts:
            parent, st = _target(root, parts)
            try:
                if not stat.S_ISDIR(st.st_mode):
                    kind = _entry_type(st.st_mode)
                    if kind:
                        out.items.append(
                            FileEntry(name=parts[-1], type=kind, size=st.st_size, mtime=st.st_mtime)
                        )
                    return out
                fd = open_child_dir(parent, parts[-1], parts)
            finally:
                os.close(parent)
        else:
            fd = os.dup(root)
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if not parts and entry.name == UPLOAD_DIR:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    kind = _entry_type(st.st_mode)
                    if kind is None:
                        continue
                    if len(out.items) >= MAX_LIST:
                        out.truncated = True
                        break
                    out.items.append(
                        FileEntry(name=entry.name, type=kind, size=st.st_size, mtime=st.st_mtime)
                    )
        finally:
            os.close(fd)
    finally:
        os.close(root)
    out.items.sort(key=lambda e: e.name)
    return out


async def list_files(volume: VolumeDir, path: str | None) -> FileList:
    return await asyncio.to_thread(_list_sync, volume, path)


# ------------------------------------------------------------------------ manifest


def _walk(
    fd: int, prefix: str, depth: int, visit: Callable[[int, str, os.DirEntry[str]], bool]
) -> None:
    """Depth-first over the folder `fd`: `visit(dir_fd, relative path, entry)` for every
    entry (links and special files too); a folder is entered when it returns True."""
    with os.scandir(fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if depth == 0 and entry.name == UPLOAD_DIR:
            continue
        rel = f"{prefix}{entry.name}"
        if not visit(fd, rel, entry):
            continue
        try:
            child = os.open(entry.name, _OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            continue  # gone, or replaced by a link since it was listed: not followed
        try:
            if depth + 1 < MAX_DEPTH:
                _walk(child, rel + "/", depth + 1, visit)
        finally:
            os.close(child)


class _Full(Exception):
    pass


def _manifest_sync(volume: VolumeDir, path: str | None) -> Manifest:
    parts = parse_path(path)
    out = Manifest(volume=volume.name, path=shown(parts), files=[])
    root = _open_root(volume, create=False)
    if root is None:
        if parts:
            raise not_found(f"no folder {shown(parts)!r} in this volume (it is empty)")
        return out
    try:
        fd = open_dir(root, parts)
    finally:
        os.close(root)

    def visit(_: int, rel: str, entry: os.DirEntry[str]) -> bool:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISREG(st.st_mode):
            if len(out.files) >= MAX_MANIFEST:
                raise _Full
            out.files.append(ManifestEntry(path=rel, size=st.st_size, mtime=st.st_mtime))
        return stat.S_ISDIR(st.st_mode)

    try:
        _walk(fd, "", 0, visit)
    except _Full:
        out.truncated = True
    finally:
        os.close(fd)
    return out


async def manifest(volume: VolumeDir, path: str | None) -> Manifest:
    return await asyncio.to_thread(_manifest_sync, volume, path)


# ------------------------------------------------------------------------ download


class _Stopped(Exception):
    """The client went away: the producer thread stops."""


class StreamAborted(Exception):
    """Producing a streamed reply failed half-way (e.g. a disk read error)."""


class _Emitter:
    """A write-only file object for `tarfile`: hands the bytes to `emit` in chunks."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self.emit = emit
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= STREAM_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.emit(bytes(self.buffer))
            self.buffer.clear()


class _Exactly:
    """Reads exactly `size` bytes of `fd`: a file that shrank while being sent is
    padded with zeros (the archive stays well formed), one that grew is cut."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        data = os.read(self.fd, want) if want else b""
        if len(data) < want:
            data += b"\0" * (want - len(data))
        self.left -= len(data)
        return data


def _info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = st.st_mtime
    info.size = st.st_size if kind == tarfile.REGTYPE else 0
    return info


def _add_file(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> None:
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return  # gone, unreadable, or swapped for a link since it was listed
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            tar.addfile(_info(arcname, st, tarfile.REGTYPE), _Exactly(fd, st.st_size))
    finally:
        os.close(fd)


def _add_link(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return
    info = _info(arcname, st, tarfile.SYMTYPE)
    info.linkname = target
    tar.addfile(info)


def _produce_tar(parts: tuple[str, ...], opened: int, emit: Callable[[bytes], None]) -> None:
    """Write the archive of what `opened` is (a folder, or a regular file)."""
    out = _Emitter(emit)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        st = os.fstat(opened) if opened >= 0 else None
        if st is None:
            pass
        elif stat.S_ISREG(st.st_mode):
            tar.addfile(_info(parts[-1], st, tarfile.REGTYPE), _Exactly(opened, st.st_size))
        else:

            def visit(dir_fd: int, rel: str, entry: os.DirEntry[str]) -> bool:
                try:
                    est = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    return False
                if stat.S_ISDIR(est.st_mode):
                    tar.addfile(_info(rel, est, tarfile.DIRTYPE))
                    return True
                if stat.S_ISLNK(est.st_mode):
                    _add_link(tar, dir_fd, entry.name, rel)
                elif stat.S_ISREG(est.st_mode):
                    _add_file(tar, dir_fd, entry.name, rel)
                return False

            _walk(opened, "", 0 if not parts else 1, visit)
    out.flush()


def _open_download(volume: VolumeDir, path: str | None) -> tuple[tuple[str, ...], int]:
    """Check the path and open what is to be sent, before the reply starts (so errors
    are a proper 4xx, not a broken stream)."""
    parts = parse_path(path)
    root = _open_root(volume, create=False)
    if root is None:
        if parts:
            raise not_found(f"nothing at {shown(parts)!r} in this volume (it is empty)")
        return parts, -1  # nothing written yet: an empty archive
    if not parts:
        return parts, root
    try:
        parent, st = _target(root, parts)
    finally:
        os.close(root)
    try:
        if stat.S_ISDIR(st.st_mode):
            return parts, open_child_dir(parent, parts[-1], parts)
        return parts, open_file(parent, parts[-1], parts)
    finally:
        os.close(parent)


async def download(volume: VolumeDir, path: str | None) -> tuple[str, AsyncIterator[bytes]]:
    """(the archive's suggested file name, its bytes as they are produced)."""
    parts, opened = await asyncio.to_thread(_open_download, volume, path)
    name = f"{parts[-1] if parts else volume.name}.tar"

    def produce(emit: Callable[[bytes], None]) -> None:
        try:
            _produce_tar(parts, opened, emit)
        finally:
            if opened >= 0:
                os.close(opened)

    return name, stream_from_thread(produce, what=f"download of {volume.name}:{shown(parts)}")


def stream_from_thread(
    produce: Callable[[Callable[[bytes], None]], None],
    *,
    depth: int = 4,
    stall_s: float = STALL_S,
    what: str = "stream",
) -> AsyncIterator[bytes]:
    """Start `produce(emit)` in its own thread now, and return what it emits as an
    async iterator, at most `depth` chunks ahead of the reader (backpressure). Each
    call has its own thread and buffers: concurrent downloads share nothing. When the
    reader stops (the client went away) or takes nothing for `stall_s`, the producer's
    next `emit` ends it, so the thread and what it holds open never outlive the reply."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()
    room = threading.Semaphore(depth)
    stopped = threading.Event()

    def emit(chunk: bytes) -> None:
        if not room.acquire(timeout=stall_s) or stopped.is_set():
            raise _Stopped
        loop.call_soon_threadsafe(queue.put_nowait, chunk)

    def run() -> None:
        end: Exception | None = None
        try:
            produce(emit)
        except _Stopped:
            return
        except Exception as exc:
            log.warning("event=stream_failed what=%s error=%r", what, exc)
            end = StreamAborted(f"{what} failed: {exc!r}")
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is reading
            loop.call_soon_threadsafe(queue.put_nowait, end)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while (chunk := await queue.get()) is not None:
                if isinstance(chunk, Exception):
                    # Abort the reply (no final chunk): the client sees a broken
                    # transfer, never a shorter archive that looks complete.
                    raise chunk
                room.release()
                yield chunk
        finally:
            stopped.set()
            room.release()  # wake a producer waiting for room: it sees `stopped`

    threading.Thread(target=run, name="dora-stream", daemon=True).start()
    return chunks()


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
        raise _os_error(exc, "write the upload") from None
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
    root = _open_root(volume, create=True)
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
        raise _os_error(exc, "start the upload") from None
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
    root = _open_root(volume, create=False)
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
        raise _os_error(exc, "write the upload") from None
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
