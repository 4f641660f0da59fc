"""Paths inside a volume, and walking them without ever leaving it.

A request names a path relative to the volume's root: POSIX, relative, no NUL, no
``..``; ``""``, ``.`` and ``/`` mean the root itself. `parse_path` checks the text
(pure). The walk functions then resolve it one component at a time from an open
directory descriptor with ``O_NOFOLLOW``, so a symbolic link planted inside the
volume (by a container that mounts it, say) is never followed, for reading or for
writing: it is refused with a 400 naming the link. Hidden upload data
(`UPLOAD_DIR`) is not addressable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from dora.api.errors import ApiError, invalid, not_found

UPLOAD_DIR = ".dora-uploads"
"""Partial uploads, inside the volume (so any API replica can continue one)."""
MAX_PATH = 4096
MAX_COMPONENT = 255

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def parse_path(text: str | None, *, field: str = "path", root_ok: bool = True) -> tuple[str, ...]:
    """The components of a volume path; 400 (naming `field`) when it is not one."""
    raw = text or ""
    if "\0" in raw:
        raise invalid(f"{field}: must not contain NUL characters", field=field)
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise invalid(f"{field}: longer than {MAX_PATH} bytes", field=field)
    if raw.startswith("/") and raw.strip("/"):
        raise invalid(
            f"{field}: {raw!r} is absolute; give a path relative to the volume's root "
            "(e.g. data/train.csv)",
            field=field,
        )
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if ".." in parts:
        raise invalid(f"{field}: '..' is not allowed; paths stay inside the volume", field=field)
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT:
            raise invalid(f"{field}: a name is longer than {MAX_COMPONENT} bytes", field=field)
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(f"{field}: must be valid Unicode", field=field) from None
    if parts and parts[0] == UPLOAD_DIR:
        raise invalid(f"{field}: {UPLOAD_DIR} holds Dora's partial uploads", field=field)
    if not parts and not root_ok:
        raise invalid(f"{field}: name a file, not the volume's root", field=field)
    return parts


def shown(parts: tuple[str, ...]) -> str:
    return "/".join(parts) or "/"


def symlink_refused(parts: tuple[str, ...]) -> ApiError:
    return invalid(
        f"path: {shown(parts)!r} is a symbolic link; Dora never follows links inside a "
        "volume (use the path it points to)",
        field="path",
    )


def _kind_at(dir_fd: int, name: str) -> int | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None


def open_child_dir(dir_fd: int, name: str, where: tuple[str, ...], *, create: bool = False) -> int:
    """Open directory `name` inside `dir_fd` without following a link; `where` is its
    path for messages. `create` makes it (mode 0o755) when missing."""
    for _ in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            mode = _kind_at(dir_fd, name)
            if mode is None and create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=dir_fd)
                continue
            if mode is None:
                raise not_found(f"no folder {shown(where)!r} in this volume") from None
            if stat.S_ISLNK(mode):
                raise symlink_refused(where) from None
            if not stat.S_ISDIR(mode):
                raise invalid(
                    f"path: {shown(where)!r} is a file, not a folder", field="path"
                ) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise ApiError(
                    403, "forbidden", f"the API may not read {shown(where)!r} in this volume"
                ) from None
            raise
    raise not_found(f"no folder {shown(where)!r} in this volume")


def open_dir(root_fd: int, parts: tuple[str, ...], *, create: bool = False) -> int:
    """A new descriptor of the folder `parts` below `root_fd`, never through a link."""
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            child = open_child_dir(fd, part, parts[: i + 1], create=create)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_file(dir_fd: int, name: str, where: tuple[str, ...]) -> int:
    """Open regular file `name` for reading without following a link."""
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except FileNotFoundError:
        raise not_found(f"no file {shown(where)!r} in this volume") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_refused(where) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise invalid(f"path: {shown(where)!r} is not a regular file", field="path")
    return fd
