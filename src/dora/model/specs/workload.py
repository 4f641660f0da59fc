"""Spec of Workload (and Container, whose spec is a copy of its workload's).

What a user may ask for is deliberately narrower than what Docker offers: no bind
mounts, no privileged mode, no host network, no capabilities or devices, no raw
Docker options. Those give root on the node, so they are admin-only and never part
of a user's spec (the original passed ``binds`` and any ``config`` array straight to
Docker).

Resources: ``selectors.gpu.count`` GPUs (exclusive), ``selectors.cpu.count`` whole
CPUs (exclusive, an integer) or millicores (shared, ``"500m"``). A workload that
selects neither CPU nor GPU gets one whole CPU.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from dora.model.scalars import (
    ALL,
    AbsPath,
    Bool,
    Choice,
    Name,
    PortNumber,
    Priority,
    ReplicaCount,
    SubPath,
    describe,
    fail,
)
from dora.model.specs.base import Spec
from dora.model.specs.runtime import Config, Driver, Image, duration_seconds
from dora.model.specs.selectors import Selectors

# --- volumes and network ------------------------------------------------------------


class VolumeMount(Spec):
    """Mount a Volume of this (or ``workspace``'s) workspace at ``target``.

    ``group`` is accepted as a synonym of ``workspace`` and stored as ``workspace``.
    ``target`` defaults to ``/<name>``. ``readOnly`` unset follows the volume's policy.
    """

    name: Name
    target: AbsPath
    workspace: Name | None = None
    subpath: SubPath | None = None
    readOnly: Bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _synonyms_and_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "group" in data:
            group = data.pop("group")
            workspace = data.get("workspace")
            if workspace is not None and group is not None and workspace != group:
                fail(
                    f"group ({describe(group)}) and workspace ({describe(workspace)}) differ; "
                    "they are synonyms, keep one",
                    field="workspace",
                )
            if workspace is None:
                data["workspace"] = group
        if data.get("target") is None and isinstance(data.get("name"), str):
            data["target"] = "/" + data["name"]
        return data

    @model_validator(mode="after")
    def _not_root(self) -> VolumeMount:
        if self.target.rstrip("/") == "":
            fail("cannot mount a volume over /", field="target")
        return self


def _network_mode(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() == "host":
        fail("host networking is admin-only; use mode: bridge with ports")
    return Choice(("none", "bridge"))(value)


NetworkMode = Annotated[Literal["none", "bridge"], BeforeValidator(_network_mode)]
Protocol = Annotated[Literal["tcp", "udp"], BeforeValidator(Choice(("tcp", "udp")))]
PortKind = Annotated[Literal["NodePort"], BeforeValidator(Choice(("NodePort",)))]


class Port(Spec):
    """Publish ``port`` on the node: at ``nodePort`` + replica index − 1, or a random port."""

    name: Name | None = None
    kind: PortKind = "NodePort"
    protocol: Protocol = "tcp"
    port: PortNumber
    nodePort: PortNumber | None = None


class Network(Spec):
    mode: NetworkMode = "none"
    ports: list[Port] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ports_need_bridge(self) -> Network:
        if self.ports and self.mode != "bridge":
            fail("ports are published only with mode: bridge", field="ports")
        seen: set[tuple[int, str]] = set()
        for i, port in enumerate(self.ports):
            if (port.port, port.protocol) in seen:
                fail(f"port {port.port}/{port.protocol} is listed twice", field=("ports", i))
            seen.add((port.port, port.protocol))
        return self


# --- the spec -----------------------------------------------------------------------


class Replica(Spec):
    count: ReplicaCount = 1


class WorkloadSpec(Spec):
    """A replicated containerised job or service.

    Defaults: 1 replica, driver Docker, priority 0, pull IfNotPresent, affinity First,
    restartPolicy Never, network none, one whole CPU when no selector asks for CPUs
    or GPUs.
    """

    replica: Replica = Field(default_factory=Replica)
    driver: Driver = "Docker"
    priority: Priority = 0
    selectors: Selectors = Field(default_factory=Selectors)
    image: Image
    config: Config = Field(default_factory=Config)
    volumes: list[VolumeMount] = Field(default_factory=list)
    network: Network = Field(default_factory=Network)

    @model_validator(mode="after")
    def _distinct_targets(self) -> WorkloadSpec:
        seen: set[str] = set()
        for i, volume in enumerate(self.volumes):
            target = volume.target.rstrip("/")
            if target in seen:
                fail(f"two volumes are mounted at {volume.target}", field=("volumes", i, "target"))
            seen.add(target)
        return self

    # Helpers for the scheduler and the node agent. They encode the defaults once.

    def replicas(self) -> int:
        return self.replica.count

    def gpu_count(self) -> int:
        """GPUs per replica (0 when no GPU selector)."""
        return self.selectors.gpu.count if self.selectors.gpu else 0

    def is_gpu_workload(self) -> bool:
        return self.gpu_count() > 0

    def cpu_request_millicores(self) -> int:
        """CPU per replica in millicores.

        The cpu selector's request when there is one; otherwise 1000 (one whole CPU)
        for a CPU workload, and 0 for a GPU workload, whose CPUs follow its GPUs.
        """
        if self.selectors.cpu is not None:
            return self.selectors.cpu.millicores
        return 0 if self.is_gpu_workload() else 1000

    def exclusive_cpus(self) -> int:
        """Whole CPUs to pin (cpuset) per replica; 0 for millicore or GPU workloads."""
        cpu = self.selectors.cpu
        if cpu is None:
            return 0 if self.is_gpu_workload() else 1
        return 0 if isinstance(cpu.count, str) else cpu.count

    def gpu_product_names(self) -> tuple[str, ...] | None:
        return self.selectors.gpu.product_names() if self.selectors.gpu else None

    def cpu_product_names(self) -> tuple[str, ...] | None:
        return self.selectors.cpu.product_names() if self.selectors.cpu else None

    def node_name(self) -> str | None:
        """The pinned node, or ``None`` (also for ``name: All``)."""
        node = self.selectors.node
        return None if node is None or node.name == ALL else node.name

    def argv(self) -> list[str] | None:
        """The command as argv (a string ``cmd`` is split on whitespace); None: image default."""
        cmd = self.config.cmd
        if cmd is None:
            return None
        return cmd.split() if isinstance(cmd, str) else list(cmd)

    def env_list(self) -> list[str]:
        """``["NAME=value", ...]`` as Docker wants it."""
        return [f"{k}={v}" for k, v in self.config.env.items()]

    def shm_size_bytes(self) -> int | None:
        return self.config.shmSize

    def max_run_time_seconds(self) -> int | None:
        mrt = self.config.maxRunTime
        return None if mrt is None else duration_seconds(mrt)


ADMIN_ONLY_KEYS: frozenset[str] = frozenset(
    k.lower()
    for k in (
        "binds",
        "privileged",
        "capAdd",
        "capDrop",
        "capabilities",
        "devices",
        "deviceRequests",
        "deviceCgroupRules",
        "hostConfig",
        "networkMode",
        "pidMode",
        "ipcMode",
        "utsMode",
        "usernsMode",
        "cgroupnsMode",
        "securityOpt",
        "mounts",
        "volumesFrom",
        "sysctls",
        "runtime",
        "cgroupParent",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "user",
        "groupAdd",
        "extraHosts",
    )
)
"""Keys that would give a container access to its host: never in a user spec."""

ADMIN_ONLY_REASON = (
    "host access is admin-only (bind mounts, privileged mode, capabilities, devices, "
    "host namespaces and raw Docker options)"
)

__all__ = [
    "ADMIN_ONLY_KEYS",
    "ADMIN_ONLY_REASON",
    "Network",
    "Port",
    "Replica",
    "VolumeMount",
    "WorkloadSpec",
]
