"""Where a volume's directory is on the API host, for the file operations.

The rule for *where a volume lives* is `dora.model.location.volume_location`, the
same the scheduler hands the node agents. This module only maps that location onto
this host:

* Local storage: the directory itself (the same checks the node agent applies before
  bind-mounting it, and never the API's own data folder);
* NFS storage: the export ``endpoint:mountpath`` mounted on this host, either where
  the admin says (``DORA_STORAGE_MOUNTS``) or, failing that, by the API itself, once
  per storage, under ``$DORA_DATA_DIR/storage-mounts/<storage>`` (`mount_nfs`).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import subprocess
from collections.abc import Mapping
from pathlib import Path

from dora.api.errors import ApiError
from dora.model.location import VolumeLocation
from dora.node.spec import SpecError, check_bind_path

MOUNT_TIMEOUT_S = 30.0
NFS_OPTIONS = "rw,soft,timeo=100,retrans=2"


def unavailable(message: str) -> ApiError:
    return ApiError(503, "storage_unavailable", message)


def misconfigured(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def local_dir(location: VolumeLocation, data_dir: Path | None) -> str:
    """The directory of a Local-storage volume on this host."""
    try:
        path = check_bind_path(location.path)
    except SpecError as exc:
        raise misconfigured(f"this volume cannot be served: {exc}") from None
    if data_dir is not None:
        private = os.path.realpath(data_dir)
        real = os.path.realpath(path)
        if private == real or private.startswith(real.rstrip("/") + "/"):
            raise misconfigured(
                f"this volume's directory {path} contains the API's data folder; refusing it"
            )
    return path


def path_on_export(location: VolumeLocation, mounted_at: str) -> str:
    """The volume's directory, given where its storage's export is mounted (pure)."""
    export = posixpath.normpath(location.mountpath)
    path = posixpath.normpath(location.path)
    if path != export and not path.startswith(export.rstrip("/") + "/"):
        raise misconfigured(
            f"this volume's path {path} is outside its storage's export {export}; the API "
            "reaches only the export (mount that path too and give the volume no localPath, "
            "or ask an admin)"
        )
    rel = posixpath.relpath(path, export)
    if rel == ".":
        return mounted_at
    if rel.split("/")[0] == "..":  # cannot happen after the prefix check; be explicit
        raise misconfigured(f"this volume's path {path} is outside {export}")
    return posixpath.join(mounted_at, rel)


def mount_nfs(endpoint: str, export: str, target: Path, timeout: float = MOUNT_TIMEOUT_S) -> None:
    """``mount -t nfs endpoint:export target`` (blocking); a clear error if it fails."""
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = f"{endpoint}:{export}"
    advice = (
        "install nfs-common on the API host and run the API as root, or mount the export "
        "yourself and set DORA_STORAGE_MOUNTS=<storage>=<mount point>"
    )
    try:
        done = subprocess.run(
            ["mount", "-t", "nfs", "-o", NFS_OPTIONS, source, str(target)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise unavailable(f"cannot mount {source}: no mount command; {advice}") from None
    except subprocess.TimeoutExpired:
        raise unavailable(
            f"cannot mount {source}: no answer within {timeout:.0f} s (is the NFS server up "
            f"and reachable from the API host?); {advice}"
        ) from None
    if done.returncode != 0:
        lines = (line.strip() for line in (done.stderr or done.stdout).splitlines())
        reason = " ".join(line for line in lines if line and "dmesg" not in line)
        raise unavailable(f"cannot mount {source}: {reason or 'mount failed'}; {advice}")


class StorageMounts:
    """The NFS exports this API host can reach, mounting each one at most once."""

    def __init__(self, configured: Mapping[str, str], data_dir: Path | None) -> None:
        self.configured = dict(configured)
        self.data_dir = data_dir
        self.mounts_dir = data_dir / "storage-mounts" if data_dir else None
        self._locks: dict[str, asyncio.Lock] = {}

    async def volume_dir(self, location: VolumeLocation) -> str:
        """The volume's directory on this host (see the module docstring)."""
        if location.kind == "Local":
            return local_dir(location, self.data_dir)
        return path_on_export(location, await self.export_root(location))

    async def export_root(self, location: VolumeLocation) -> str:
        name = location.storage
        if name in self.configured:
            return self.configured[name]
        if self.mounts_dir is None or not location.endpoint:
            raise unavailable(
                f"storage {name} is not reachable from the API host: mount its export and "
                f"set DORA_STORAGE_MOUNTS={name}=<mount point>"
            )
        target = self.mounts_dir / name
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if not await asyncio.to_thread(os.path.ismount, target):
                await asyncio.to_thread(mount_nfs, location.endpoint, location.mountpath, target)
        return str(target)
