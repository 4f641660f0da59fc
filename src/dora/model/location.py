"""Where a Volume's data lives: the one rule the scheduler (for the node agents) and
the API (for `dora ls/upload/download/sync`) share, so both always mean the same
directory.

A volume on a Storage of kind ``NFS`` is the directory ``<mountpath>/<workspace>/<volume>``
of the export ``endpoint:mountpath``; on a ``Local`` storage it is that directory on
the host itself. ``storage: Local`` (no Storage record) means a Local storage rooted at
`LOCAL_VOLUME_ROOT`. The volume's ``localPath`` replaces the whole path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

LOCAL_VOLUME_ROOT = "/var/lib/dora/volumes"
"""Where a ``storage: Local`` volume without ``localPath`` lives on every node."""

StorageKind = Literal["NFS", "Local"]


@dataclass(frozen=True)
class VolumeLocation:
    storage: str
    """The Storage the volume names (``Local`` for none)."""
    kind: StorageKind
    endpoint: str | None
    """The NFS server (None for Local)."""
    mountpath: str
    """The storage's root: the NFS export path, or the Local directory."""
    path: str
    """The volume's directory: on the NFS server, or on the host for Local."""


def volume_location(
    workspace: str,
    name: str,
    volume_spec: Mapping[str, Any] | None,
    storage_spec: Mapping[str, Any] | None,
) -> VolumeLocation:
    """Where volume `name` of `workspace` lives; `storage_spec` is the spec of the
    Storage its ``spec.storage`` names (None when that is ``Local`` or missing)."""
    vspec = volume_spec or {}
    sspec = storage_spec or {}
    kind: StorageKind = "NFS" if sspec.get("kind") == "NFS" else "Local"
    mountpath = str(sspec.get("mountpath") or LOCAL_VOLUME_ROOT)
    local_path = vspec.get("localPath")
    endpoint = sspec.get("endpoint")
    return VolumeLocation(
        storage=str(vspec.get("storage") or "Local"),
        kind=kind,
        endpoint=str(endpoint) if endpoint else None,
        mountpath=mountpath,
        path=str(local_path or f"{mountpath.rstrip('/')}/{workspace}/{name}"),
    )
