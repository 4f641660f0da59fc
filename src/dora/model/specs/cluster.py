"""Specs of the infrastructure kinds an admin applies: Zone, Workspace, Storage, Volume, Node."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from dora.model.scalars import (
    AbsPath,
    Bool,
    Choice,
    Host,
    Url,
    fail,
    name_problem,
    scalar_text,
)
from dora.model.specs.base import EmptySpec, Spec

LOCAL_STORAGE = "Local"
"""``Volume.spec.storage`` value meaning "a directory on the node itself"."""


class ZoneSpec(Spec):
    """A zone: one scheduler, one set of nodes. ``endpoint`` is that zone's API URL."""

    endpoint: Url | None = None


class WorkspaceSpec(EmptySpec):
    """A workspace (``group`` in the original YAML) has no spec."""


StorageKindValue = Literal["NFS", "Local"]
StorageKind = Annotated[StorageKindValue, BeforeValidator(Choice.of(StorageKindValue))]


class StorageSpec(Spec):
    """Where volumes live.

    ``NFS``: an export at ``endpoint:mountpath``; each volume is the directory
    ``<mountpath>/<workspace>/<volume>`` on it. ``Local``: ``mountpath`` is a
    directory present on every node (a local disk, or an NFS mount the admin made
    on the hosts), so no ``endpoint``.
    """

    endpoint: Host | None = None
    mountpath: AbsPath
    kind: StorageKind = "NFS"

    @model_validator(mode="after")
    def _endpoint_matches_kind(self) -> StorageSpec:
        if self.kind == "NFS" and self.endpoint is None:
            fail("required for NFS storage (the NFS server's host or IP)", field="endpoint")
        if self.kind == "Local" and self.endpoint is not None:
            fail("Local storage has no endpoint: it is a directory on every node", field="endpoint")
        return self


def _storage_ref(value: object) -> str:
    # ``Local`` is matched exactly like the original; any other text must be a name.
    text = scalar_text(value)
    if text == LOCAL_STORAGE:
        return text
    problem = name_problem(text)
    if problem:
        fail(f"{problem}; a Storage name or {LOCAL_STORAGE}")
    return text


VolumePolicyValue = Literal["rw", "readonly"]
VolumePolicy = Annotated[VolumePolicyValue, BeforeValidator(Choice.of(VolumePolicyValue))]


class VolumeSpec(Spec):
    """A workspace's named volume on a Storage.

    ``localPath`` overrides the path on the storage; because it can point anywhere on
    the storage, the API only lets admins set it. ``policy: readonly`` mounts it
    read-only in every container.
    """

    storage: Annotated[str, BeforeValidator(_storage_ref)]
    localPath: AbsPath | None = None
    policy: VolumePolicy = "rw"


NodeAllowValue = Literal["CPUWorkload", "GPUWorkload"]
NodeAllow = Annotated[NodeAllowValue, BeforeValidator(Choice.of(NodeAllowValue))]
_ALLOW_ALL: tuple[NodeAllowValue, ...] = ("CPUWorkload", "GPUWorkload")


class NodeSpec(Spec):
    """A compute node the API trusts. The name must equal the agent's ``NODE_NAME``.

    ``allow`` defaults to both workload types; ``schedulingDisabled: true`` keeps
    running containers but places nothing new (cordon).
    """

    endpoint: Url
    allow: list[NodeAllow] = Field(default_factory=lambda: list(_ALLOW_ALL))
    schedulingDisabled: Bool = False

    @model_validator(mode="after")
    def _no_duplicate_allow(self) -> NodeSpec:
        if len(set(self.allow)) != len(self.allow):
            fail("lists a workload type twice", field="allow")
        return self

    def allows_gpu(self) -> bool:
        return "GPUWorkload" in self.allow

    def allows_cpu(self) -> bool:
        return "CPUWorkload" in self.allow


__all__ = [
    "LOCAL_STORAGE",
    "NodeSpec",
    "StorageSpec",
    "VolumeSpec",
    "WorkspaceSpec",
    "ZoneSpec",
]
