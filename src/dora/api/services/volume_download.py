"""Downloads from a volume: a tar streamed from a thread, links stored as links, never
followed; a failure half-way aborts the reply so a cut-short archive never looks
complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tarfile
import threading
from collections.abc import AsyncIterator, Callable

from dora.api.errors import not_found
from dora.api.services.volume_files import (
    VolumeDir,
    open_root,
    target,
    walk,
)
from dora.api.services.volume_paths import (
    open_child_dir,
    open_file,
    parse_path,
    shown,
)

log = logging.getLogger("dora.api.volumes")

STREAM_CHUNK = 256 * 1024
STALL_S = 300.0
"""A download whose reader takes nothing for this long is abandoned."""

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

            walk(opened, "", 0 if not parts else 1, visit)
    out.flush()


def _open_download(volume: VolumeDir, path: str | None) -> tuple[tuple[str, ...], int]:
    """Check the path and open what is to be sent, before the reply starts (so errors
    are a proper 4xx, not a broken stream)."""
    parts = parse_path(path)
    root = open_root(volume, create=False)
    if root is None:
        if parts:
            raise not_found(f"nothing at {shown(parts)!r} in this volume (it is empty)")
        return parts, -1  # nothing written yet: an empty archive
    if not parts:
        return parts, root
    try:
        parent, st = target(root, parts)
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
