"""Files on volumes from the SDK: upload (resumable), download (a tar, extracted
safely), and one-way sync of a local folder into a volume.

    with Client(server, token) as dora:
        dora.upload("./data", "home", "datasets")      # ./data/x → datasets/x
        dora.download("home", "results", "./results")  # results/* → ./results/*
        print([e.name for e in dora.ls("home", "datasets")])

Paths in a volume are relative to its root (a leading ``/`` is dropped). A folder's
*contents* go to the destination, both ways. Uploads are resumable: running the
same upload again continues every unfinished file where the server stopped
(``POST …/uploads`` answers the offset it holds). Downloads are extracted with
tarfile's ``data`` filter: nothing is written outside the destination, links that
point out of it are skipped (and counted), and no ownership or special bits apply.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dora.api.schemas import UploadOut
from dora.client import calls
from dora.client.errors import ConnectionFailed, DoraError, Invalid, error_for

if TYPE_CHECKING:
    from dora.client.client import Client

MIB = 1024 * 1024
DEFAULT_CHUNK = 50 * MIB
"""As the original CLI's ``-c`` default (50 MB)."""
IGNORE_FILE = ".dorasyncignore"
ALWAYS_IGNORED = (".git", IGNORE_FILE)
RESUME_TRIES = 5
MTIME_SLACK = 1e-3

Progress = Callable[[str, int, int], None]
"""``progress(name, bytes done, bytes total)``, called as bytes move."""


def volume_path(text: str | None) -> str:
    """A path in a volume as the API wants it: relative (``/`` and ``""`` = the root)."""
    return "/".join(p for p in (text or "").split("/") if p not in ("", "."))


def _join(base: str, rel: str) -> str:
    return volume_path(posixpath.join(volume_path(base), rel))


# ---------------------------------------------------------------------- local files


@dataclass(frozen=True)
class LocalFile:
    path: Path
    rel: str
    """Relative to the folder being sent, POSIX separators."""
    size: int
    mtime: float


def read_ignore(folder: Path) -> list[str]:
    """Patterns of ``<folder>/.dorasyncignore``, one per line; ``#`` starts a comment
    line (``\\#`` is a literal ``#``)."""
    try:
        text = (folder / IGNORE_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _matches(pattern: str, rel: str, name: str) -> bool:
    if "/" in pattern:
        return fnmatch.fnmatchcase(rel, pattern.lstrip("/"))
    return fnmatch.fnmatchcase(name, pattern)


def ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """Whether `rel` (POSIX, relative) is skipped: ``.git`` anywhere, and the patterns
    gitignore-style — a pattern with a ``/`` matches the whole path from the folder's
    root, one without matches any single name; a trailing ``/`` matches folders only;
    ``!pattern`` takes a path matched by an earlier pattern back in (the last pattern
    that matches decides; as in git, nothing inside a skipped folder comes back);
    ``\\!`` and ``\\#`` start a pattern with a literal ``!`` or ``#``."""
    parts = rel.split("/")
    if any(p in ALWAYS_IGNORED for p in parts):
        return True
    for depth in range(1, len(parts)):  # a folder on the way is skipped: so is this
        if _decide("/".join(parts[:depth]), parts[depth - 1], True, patterns):
            return True
    return _decide(rel, parts[-1], is_dir, patterns)


def _decide(rel: str, name: str, is_dir: bool, patterns: list[str]) -> bool:
    """The last pattern matching `rel` itself decides (no pattern: kept)."""
    skip = False
    for raw in patterns:
        negate = raw.startswith("!")
        body = raw[1:] if negate else raw
        if body.startswith(("\\!", "\\#")):
            body = body[1:]
        pattern, dirs_only = body.rstrip("/"), body.endswith("/")
        if not pattern or (dirs_only and not is_dir):
            continue
        if _matches(pattern, rel, name):
            skip = not negate
    return skip


def local_files(
    source: Path, patterns: list[str] | None = None, skipped: list[str] | None = None
) -> list[LocalFile]:
    """Regular files below `source` (or `source` itself), not following links; links
    and other special files are named in `skipped`."""
    st = source.lstat()
    if stat.S_ISREG(st.st_mode):
        return [LocalFile(source, source.name, st.st_size, st.st_mtime)]
    if not stat.S_ISDIR(st.st_mode):
        raise Invalid(f"{source} is not a file or a folder", field="source")
    patterns = read_ignore(source) if patterns is None else patterns
    out: list[LocalFile] = []
    for top, dirs, names in os.walk(source, followlinks=False):
        base = Path(top)
        rel_top = base.relative_to(source).as_posix()
        rel_top = "" if rel_top == "." else rel_top + "/"
        dirs[:] = sorted(d for d in dirs if not ignored(rel_top + d, True, patterns))
        for name in sorted(names):
            rel = rel_top + name
            if ignored(rel, False, patterns):
                continue
            try:
                fst = (base / name).lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(fst.st_mode):
                out.append(LocalFile(base / name, rel, fst.st_size, fst.st_mtime))
            elif skipped is not None:
                skipped.append(rel)
        if skipped is not None:
            skipped.extend(rel_top + d for d in dirs if (base / d).is_symlink())
    return out


def changed(local: list[LocalFile], remote: Mapping[str, tuple[int, float]]) -> list[LocalFile]:
    """The local files whose size or mtime differ from the volume's (or are missing
    there): what a sync sends."""
    out = []
    for f in local:
        there = remote.get(f.rel)
        if there is None or there[0] != f.size or abs(there[1] - f.mtime) > MTIME_SLACK:
            out.append(f)
    return out


# -------------------------------------------------------------------------- upload


def upload_file(
    client: Client,
    volume: str,
    local: LocalFile,
    dest: str,
    *,
    chunk: int = DEFAULT_CHUNK,
    zone: str | None = None,
    workspace: str | None = None,
    progress: Progress | None = None,
) -> UploadOut:
    """Send one file to `dest` (its path in the volume), resuming where the server
    stopped; returns the completed upload."""
    chunk = max(1, chunk)
    up = client.call(calls.begin_upload(volume, dest, local.size, local.mtime, zone, workspace))
    if progress:
        progress(dest, up.offset, local.size)
    tries = 0
    with local.path.open("rb") as handle:
        while not up.complete:
            handle.seek(up.offset)
            data = handle.read(min(chunk, local.size - up.offset))
            if not data:
                raise DoraError(f"{local.path} shrank while it was being sent; send it again")
            try:
                up = client.call(
                    calls.upload_chunk(volume, up.id, up.offset, data, zone, workspace)
                )
                tries = 0
            except (ConnectionFailed, DoraError) as exc:
                tries += 1
                if tries > RESUME_TRIES or not _retryable(exc):
                    raise
                time.sleep(min(0.2 * 2**tries, 5.0))
                up = client.call(
                    calls.begin_upload(volume, dest, local.size, local.mtime, zone, workspace)
                )
            if progress:
                progress(dest, up.offset, local.size)
    return up


def _retryable(exc: DoraError) -> bool:
    return isinstance(exc, ConnectionFailed) or exc.code == "offset_mismatch" or exc.status == 409


@dataclass
class UploadSummary:
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    """Local links and special files that were not sent."""


def upload(
    client: Client,
    source: str | Path,
    volume: str,
    dest: str = "",
    *,
    chunk: int = DEFAULT_CHUNK,
    zone: str | None = None,
    workspace: str | None = None,
    progress: Progress | None = None,
    only: Callable[[list[LocalFile]], list[LocalFile]] | None = None,
    on_file: Callable[[LocalFile, str], None] | None = None,
) -> UploadSummary:
    """A file goes to ``dest/<its name>``, a folder's contents to ``dest/``.
    `only` narrows the list (sync passes `changed`)."""
    root = Path(source)
    summary = UploadSummary()
    files = local_files(root, skipped=summary.skipped)
    if only is not None:
        files = only(files)
    for f in files:
        target = _join(dest, f.rel)
        if on_file:
            on_file(f, target)
        upload_file(
            client,
            volume,
            f,
            target,
            chunk=chunk,
            zone=zone,
            workspace=workspace,
            progress=progress,
        )
        summary.files += 1
        summary.bytes += f.size
    return summary


def remote_manifest(
    client: Client, volume: str, path: str, *, zone: str | None, workspace: str | None
) -> dict[str, tuple[int, float]]:
    """``{relative path: (size, mtime)}`` below `path` (empty when it does not exist)."""
    from dora.client.errors import NotFound

    try:
        listing = client.call(calls.manifest(volume, volume_path(path), zone, workspace))
    except NotFound as exc:
        if "volume" in exc.message and "not found" in exc.message:
            raise
        return {}
    return {f.path: (f.size, f.mtime) for f in listing.files}


# ------------------------------------------------------------------------ download


class _Body:
    """A read-only file object over a streamed HTTP body, for ``tarfile`` ``r|``."""

    def __init__(self, chunks: Iterator[bytes], on_bytes: Callable[[int], None]) -> None:
        self.chunks = chunks
        self.buffer = b""
        self.on_bytes = on_bytes

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buffer) < n:
            piece = next(self.chunks, b"")
            if not piece:
                break
            self.on_bytes(len(piece))
            self.buffer += piece
        if n < 0:
            out, self.buffer = self.buffer, b""
        else:
            out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


@dataclass
class DownloadSummary:
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    """Archive members refused by the safety filter (e.g. links leaving the folder)."""


def download(
    client: Client,
    volume: str,
    path: str,
    dest: str | Path,
    *,
    zone: str | None = None,
    workspace: str | None = None,
    progress: Progress | None = None,
) -> DownloadSummary:
    """Extract `path` of `volume` into folder `dest` (made if missing): a folder's
    contents, or the file itself."""
    import httpx

    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    summary = DownloadSummary()
    received = 0
    shown = volume_path(path) or "/"

    def count(n: int) -> None:
        nonlocal received
        received += n
        if progress:
            progress(shown, received, -1)

    def safe(member: tarfile.TarInfo, where: str) -> tarfile.TarInfo | None:
        try:
            kept = tarfile.data_filter(member, where)
        except tarfile.FilterError:
            summary.skipped.append(member.name)
            return None
        if kept.isfile():
            summary.files += 1
            summary.bytes += kept.size
        return kept

    params: dict[str, Any] = {"path": volume_path(path)}
    params.update({k: v for k, v in (("zone", zone), ("workspace", workspace)) if v})
    http: httpx.Client = client._http
    try:
        with http.stream(
            "GET",
            calls.download_path(volume),
            params=params,
            timeout=httpx.Timeout(30.0, read=600.0),
        ) as response:
            if not response.is_success:
                response.read()
                try:
                    body = response.json()
                except ValueError:
                    body = None
                raise error_for(response.status_code, body, response.headers.get("retry-after"))
            reader = _Body(response.iter_raw(), count)
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                tar.extractall(target, filter=safe)  # noqa: S202 - the data filter, wrapped
    except httpx.HTTPError as exc:
        raise ConnectionFailed(f"download from {client.server} failed: {exc}") from None
    except tarfile.TarError as exc:
        raise DoraError(f"the archive of {shown} is damaged or cut short: {exc}") from None
    return summary
