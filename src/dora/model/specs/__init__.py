"""Spec models, one module per area, and the kind → spec model table."""

from __future__ import annotations

from dora.model.specs.access import (
    PERMISSION_KINDS,
    VERBS,
    RoleSpec,
    UserCredit,
    UserDefault,
    UserResource,
    UserSpec,
    normalize_verb,
)
from dora.model.specs.base import EmptySpec, Spec
from dora.model.specs.cluster import (
    LOCAL_STORAGE,
    NodeSpec,
    StorageSpec,
    VolumeSpec,
    WorkspaceSpec,
    ZoneSpec,
)
from dora.model.specs.credits import CreditPer, CreditRate, ResourcecreditSpec, UsercreditSpec
from dora.model.specs.runtime import Config, Image, duration_seconds, parse_size
from dora.model.specs.selectors import CpuSelector, GpuSelector, NodeSelector, Selectors
from dora.model.specs.workload import (
    ADMIN_ONLY_KEYS,
    ADMIN_ONLY_REASON,
    Network,
    Port,
    Replica,
    VolumeMount,
    WorkloadSpec,
)

SPEC_MODELS: dict[str, type[Spec]] = {
    "Zone": ZoneSpec,
    "Workspace": WorkspaceSpec,
    "User": UserSpec,
    "Role": RoleSpec,
    "Storage": StorageSpec,
    "Node": NodeSpec,
    "Resourcecredit": ResourcecreditSpec,
    "Usercredit": UsercreditSpec,
    "Volume": VolumeSpec,
    "Workload": WorkloadSpec,
    "Container": WorkloadSpec,
}
"""Spec model of every kind that can be applied (CPU and GPU cannot)."""

__all__ = [
    "ADMIN_ONLY_KEYS",
    "ADMIN_ONLY_REASON",
    "LOCAL_STORAGE",
    "PERMISSION_KINDS",
    "SPEC_MODELS",
    "VERBS",
    "Config",
    "CpuSelector",
    "CreditPer",
    "CreditRate",
    "EmptySpec",
    "GpuSelector",
    "Image",
    "Network",
    "NodeSelector",
    "NodeSpec",
    "Port",
    "Replica",
    "ResourcecreditSpec",
    "RoleSpec",
    "Selectors",
    "Spec",
    "StorageSpec",
    "UserCredit",
    "UserDefault",
    "UserResource",
    "UserSpec",
    "UsercreditSpec",
    "VolumeMount",
    "VolumeSpec",
    "WorkloadSpec",
    "WorkspaceSpec",
    "ZoneSpec",
    "duration_seconds",
    "normalize_verb",
    "parse_size",
]
