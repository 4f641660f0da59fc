"""File operations on volumes: find the volume, list a folder, the manifest for sync,
and the helpers the download and upload modules share. RBAC kind ``Volume`` with
verbs ``Ls``, ``Sync``, ``Download``, ``Upload``, checked in the volume's own zone and
workspace before anything is read.

Every path goes through `dora.api.services.volume_paths` (relative, no ``..``,
resolved component by component with ``O_NOFOLLOW``), so nothing outside the volume
is ever read or written. All file I/O runs in threads, never on the event loop.

Downloads: `dora.api.services.volume_download`; uploads:
`dora.api.services.volume_uploads`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from dora.api.context import ApiContext
from dora.api.errors import ApiError, conflict, not_found
from dora.api.identity import GLOBAL, Caller
from dora.api.schemas import (
    FileEntry,
    FileList,
    Manifest,
    ManifestEntry,
)
from dora.api.services.scope import require, resolve_scope
from dora.api.services.volume_paths import (
    UPLOAD_DIR,
    lstat_at,
    open_child_dir,
    open_dir,
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
OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


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


def open_root(volume: VolumeDir, *, create: bool) -> int | None:
    """The volume's directory (None when it does not exist yet and `create` is off)."""
    try:
        return os.open(volume.path, OPEN_FLAGS)
    except FileNotFoundError:
        if not create:
            return None
    try:
        os.makedirs(volume.path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, "create the volume's folder") from None
    return os.open(volume.path, OPEN_FLAGS)


def os_error(exc: OSError, doing: str) -> Exception:
    """What the client gets for a failed file operation: 403 when this host may not
    write there, 507 when the volume is full, else the error itself (a 500, logged)."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ApiError(403, "forbidden", f"the API host may not {doing}: {exc.strerror}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(507, "insufficient_storage", f"cannot {doing}: the volume is full")
    return exc


def entry_type(mode: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return None  # sockets, FIFOs, devices: not shown


# ------------------------------------------------------------------------------ ls


def target(root_fd: int, parts: tuple[str, ...]) -> tuple[int, os.stat_result]:
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
    root = open_root(volume, create=False)
    if root is None:
        if parts:
            raise not_found(f"no folder {shown(parts)!r} in this volume (it is empty)")
        return out
    try:
        if parts:
            parent, st = target(root, parts)
            try:
                if not stat.S_ISDIR(st.st_mode):
                    kind = entry_type(st.st_mode)
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
                    kind = entry_type(st.st_mode)
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


def walk(
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
            child = os.open(entry.name, OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            continue  # gone, or replaced by a link since it was listed: not followed
        try:
            if depth + 1 < MAX_DEPTH:
                walk(child, rel + "/", depth + 1, visit)
        finally:
            os.close(child)


class _Full(Exception):
    pass


def _manifest_sync(volume: VolumeDir, path: str | None) -> Manifest:
    parts = parse_path(path)
    out = Manifest(volume=volume.name, path=shown(parts), files=[])
    root = open_root(volume, create=False)
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
        walk(fd, "", 0, visit)
    except _Full:
        out.truncated = True
    finally:
        os.close(fd)
    return out


async def manifest(volume: VolumeDir, path: str | None) -> Manifest:
    return await asyncio.to_thread(_manifest_sync, volume, path)
