"""`dora ls`, `upload`, `download`, `sync`: files on volumes.

Paths in a volume are relative to its root (``/`` is the root). A folder's contents
go to the destination, both ways: ``dora upload ./data home datasets`` puts
``./data/x.csv`` at ``datasets/x.csv``, and ``dora download home datasets ./data``
brings it back to ``./data/x.csv``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dora.cli.common import (
    EXIT_USAGE,
    CaCertOpt,
    DebugOpt,
    InsecureOpt,
    ProfileOpt,
    WorkspaceOpt,
    ZoneOpt,
    client_for,
    fail,
    handle_errors,
)

VolumeArg = Annotated[str, typer.Argument(help="the volume's name (dora get vol)")]
ChunkOpt = Annotated[
    int,
    typer.Option("-c", "--chunk", min=1, max=1024, help="MB sent per request"),
]
MB = 1024 * 1024
WATCH_MIN_S, WATCH_MAX_S = 1.0, 3600.0


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


class _Meter:
    """Progress on stderr: one rewritten line on a terminal, else a line per file."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.index = 0
        self.total_files = 0

    def file(self, index: int, total: int) -> None:
        self.index, self.total_files = index, total

    def __call__(self, name: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = total >= 0 and done >= total
        if not self.tty:
            if finished and total >= 0:
                typer.echo(f"{self.verb} {name} ({_mb(total)})", err=True)
            return
        if not finished and now - self.last < 0.2:
            return
        self.last = now
        count = f"{self.index}/{self.total_files}  " if self.total_files else ""
        share = f"{100 * done // total:3d}%  " if total > 0 else ""
        size = f"{_mb(done)}/{_mb(total)}" if total >= 0 else _mb(done)
        typer.echo(f"\r\x1b[K{self.verb} {count}{name}  {share}{size}", err=True, nl=finished)

    def end(self) -> None:
        if self.tty:
            typer.echo("\r\x1b[K", err=True, nl=False)


def _not_found(exc: Any) -> typer.Exit:
    return fail(f"volume or folder not found: {exc.message}")


@handle_errors
def ls_cmd(
    volume: VolumeArg,
    path: Annotated[str, typer.Argument(help="folder in the volume")] = "/",
    long: Annotated[bool, typer.Option("-l", "--long", help="size and modification time")] = False,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List a folder of a volume: folders end with /, links with @ (never followed).

    Examples:

      dora ls home

      dora ls home datasets -l

      dora ls shared / -g my-team
    """
    from dora.client import NotFound

    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        try:
            entries = dora.ls(volume, path, zone=zone, workspace=workspace)
        except NotFound as exc:
            raise _not_found(exc) from None
    for e in entries:
        mark = {"dir": "/", "link": "@"}.get(e.type, "")
        if long:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime))
            typer.echo(f"{e.type:<4}  {e.size:>12}  {when}  {e.name}{mark}")
        else:
            typer.echo(f"{e.name}{mark}")


def _upload(
    dora: Any,
    source: Path,
    volume: str,
    subpath: str,
    chunk_mb: int,
    zone: str | None,
    workspace: str | None,
    verb: str,
    only: Any = None,
    scanned: list[Any] | None = None,
) -> Any:
    from dora.client.files import LocalFile, upload

    meter = _Meter(verb)
    counter = {"n": 0}

    def on_file(f: LocalFile, target: str) -> None:
        counter["n"] += 1
        meter.file(counter["n"], total["n"])

    total = {"n": 0}

    def narrowed(files: list[LocalFile]) -> list[LocalFile]:
        if scanned is not None:
            scanned[:] = files
        chosen = only(files) if only else files
        total["n"] = len(chosen)
        return chosen

    try:
        summary = upload(
            dora,
            source,
            volume,
            subpath,
            chunk=chunk_mb * MB,
            zone=zone,
            workspace=workspace,
            progress=meter,
            only=narrowed,
            on_file=on_file,
        )
    finally:
        meter.end()
    for name in summary.skipped:
        typer.echo(f"skipped {name} (a link or special file: not sent)", err=True)
    return summary


@handle_errors
def upload_cmd(
    source: Annotated[Path, typer.Argument(help="local file or folder")],
    volume: VolumeArg,
    subpath: Annotated[str, typer.Argument(help="folder in the volume")] = "/",
    chunk: ChunkOpt = 50,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Upload a file, or a folder's contents, into a volume (resumable).

    Interrupted? Run the same command again: each unfinished file continues where
    the server stopped. Files keep their modification time. Local links are skipped.

    Examples:

      dora upload ./data home datasets          ./data/x.csv → home:datasets/x.csv

      dora upload model.pt home                 → home:model.pt

      dora upload ./big home -c 8 -g my-team    8 MB per request
    """
    from dora.client import NotFound

    if not source.exists() and not source.is_symlink():
        raise fail(f"{source}: no such file or folder", EXIT_USAGE)
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        try:
            summary = _upload(dora, source, volume, subpath, chunk, zone, workspace, "upload")
        except NotFound as exc:
            raise _not_found(exc) from None
    where = subpath.strip("/") or "/"
    typer.echo(f"uploaded {summary.files} files ({_mb(summary.bytes)}) to {volume}:{where}")


@handle_errors
def download_cmd(
    volume: VolumeArg,
    subpath: Annotated[str, typer.Argument(help="file or folder in the volume (/ = all)")],
    dest: Annotated[Path, typer.Argument(help="local folder (made if missing)")],
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Download a folder's contents (or one file) from a volume into a local folder.

    Nothing is written outside DEST: links that point out of it are skipped and
    named. Files keep their modification time.

    Examples:

      dora download home results ./results     home:results/* → ./results/*

      dora download home model.pt .            → ./model.pt

      dora download shared / ./all -g my-team
    """
    from dora.client import NotFound

    if dest.exists() and not dest.is_dir():
        raise fail(f"{dest} exists and is not a folder", EXIT_USAGE)
    meter = _Meter("download")
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        try:
            summary = dora.download(
                volume, subpath, dest, zone=zone, workspace=workspace, progress=meter
            )
        except NotFound as exc:
            raise _not_found(exc) from None
        finally:
            meter.end()
    for name in summary.skipped:
        typer.echo(f"skipped {name} (it would leave {dest}, or is not a plain file)", err=True)
    typer.echo(f"downloaded {summary.files} files ({_mb(summary.bytes)}) to {dest}")


@handle_errors
def sync_cmd(
    source: Annotated[Path, typer.Argument(help="local folder")],
    volume: VolumeArg,
    subpath: Annotated[str, typer.Argument(help="folder in the volume")] = "/",
    watch: Annotated[
        bool, typer.Option("-w", "--watch", help="keep watching and send changes (Ctrl-C stops)")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(min=WATCH_MIN_S, max=WATCH_MAX_S, help="seconds between checks with --watch"),
    ] = 2.0,
    chunk: ChunkOpt = 50,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Make a volume folder hold what a local folder holds: send only the files whose
    size or modification time differ. One pass, then exit; --watch keeps going.

    One way only (local → volume); nothing is deleted. Skipped: .git, and the
    patterns in SOURCE/.dorasyncignore (gitignore-style: *.tmp, build/, data/raw/*,
    and !data/raw/keep.csv to take one back).

    Examples:

      dora sync ./project home project

      dora sync ./project home project --watch --interval 5
    """
    from dora.client import NotFound
    from dora.client.files import changed, remote_manifest

    if not source.is_dir():
        raise fail(f"{source}: not a folder (dora upload sends single files)", EXIT_USAGE)
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        try:
            remote = remote_manifest(dora, volume, subpath, zone=zone, workspace=workspace)
            scanned: list[Any] = []
            summary = _upload(
                dora,
                source,
                volume,
                subpath,
                chunk,
                zone,
                workspace,
                "sync",
                only=lambda files: changed(files, remote),
                scanned=scanned,
            )
            typer.echo(f"in sync: {summary.files} sent, {len(scanned) - summary.files} unchanged")
            if not watch:
                return
            typer.echo(f"watching {source} every {interval:g} s (Ctrl-C stops)")
            while True:
                known = {f.rel: (f.size, f.mtime) for f in scanned}
                time.sleep(interval)
                _upload(
                    dora,
                    source,
                    volume,
                    subpath,
                    chunk,
                    zone,
                    workspace,
                    "sync",
                    only=lambda files, seen=known: changed(files, seen),
                    scanned=scanned,
                )
        except NotFound as exc:
            raise _not_found(exc) from None
        except KeyboardInterrupt:
            typer.echo("stopped", err=True)
            raise typer.Exit(130) from None


def register(app: typer.Typer) -> None:
    app.command("ls")(ls_cmd)
    app.command("upload")(upload_cmd)
    app.command("download")(download_cmd)
    app.command("sync")(sync_cmd)
