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

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from dora.model.scalars import (
    ALL,
    AbsPath,
    Bool,
    Choice,
    Name,
    NameOrAll,
    NonNegInt,
    PortNumber,
    Priority,
    SubPath,
    at,
    describe,
    fail,
    number_text_hint,
    scalar_text,
)
from dora.model.specs.base import Spec

# --- selectors ----------------------------------------------------------------------


def _product_name(value: Any) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            fail(f"must not be an empty list; write {ALL} for any model")
        return [at(i, scalar_text, item) for i, item in enumerate(value)]
    return scalar_text(value)


ProductName = Annotated[str | list[str], BeforeValidator(_product_name)]
"""``All``, one product name, or a list of them."""

_MILLICORES = re.compile(r"([1-9][0-9]*)m")
_CPU_COUNT_RULE = 'must be an integer >= 1 or millicores like "500m"'


def _cpu_count(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            fail(f"{_CPU_COUNT_RULE} (got {value})")
        return value
    if isinstance(value, str):
        if _MILLICORES.fullmatch(value):
            return value
        hint = number_text_hint(value)
        if hint:
            fail(f"{hint} (got {describe(value)})")
    fail(f"{_CPU_COUNT_RULE} (got {describe(value)})")


CpuCount = Annotated[int | str, BeforeValidator(_cpu_count)]


def _names(product_name: str | list[str]) -> tuple[str, ...] | None:
    names = (product_name,) if isinstance(product_name, str) else tuple(product_name)
    return None if ALL in names else names


class CpuSelector(Spec):
    """CPUs: ``count`` whole CPUs (exclusive cores) or ``"<N>m"`` millicores (shared)."""

    product_name: ProductName = ALL
    count: CpuCount = 1

    @property
    def is_millicores(self) -> bool:
        """True for a shared, fractional request (``"500m"``), false for whole CPUs."""
        return isinstance(self.count, str)

    @property
    def millicores(self) -> int:
        """The request in thousandths of a CPU (``2`` → 2000, ``"500m"`` → 500)."""
        if isinstance(self.count, str):
            return int(self.count[:-1])
        return self.count * 1000

    def product_names(self) -> tuple[str, ...] | None:
        """Acceptable CPU models, or ``None`` for any."""
        return _names(self.product_name)


class GpuSelector(Spec):
    """GPUs: ``count`` whole devices of one of the ``product_name`` models."""

    product_name: ProductName = ALL
    count: NonNegInt = 1

    def product_names(self) -> tuple[str, ...] | None:
        """Acceptable GPU models, or ``None`` for any."""
        return _names(self.product_name)


class NodeSelector(Spec):
    """Pin to one node by name (``All`` = no pin)."""

    name: NameOrAll


class Selectors(Spec):
    cpu: CpuSelector | None = None
    gpu: GpuSelector | None = None
    node: NodeSelector | None = None


# --- image and config ---------------------------------------------------------------

DriverValue = Literal["Docker"]
Driver = Annotated[DriverValue, BeforeValidator(Choice.of(DriverValue))]

PullPolicyValue = Literal["Always", "IfNotPresent", "Never"]
PullPolicy = Annotated[PullPolicyValue, BeforeValidator(Choice.of(PullPolicyValue))]

AffinityValue = Literal["First", "Random", "Distribute", "Fill"]
Affinity = Annotated[AffinityValue, BeforeValidator(Choice.of(AffinityValue))]

RestartPolicyValue = Literal["Never", "Always", "OnFailure"]
RestartPolicy = Annotated[RestartPolicyValue, BeforeValidator(Choice.of(RestartPolicyValue))]


def _image_ref(value: Any) -> str:
    text = scalar_text(value)
    if any(c.isspace() for c in text) or len(text) > 1024:
        fail(f"must be an image reference like busybox:1.36 (got {describe(value)})")
    return text


class Image(Spec):
    """The container image. ``pullPolicy`` defaults to IfNotPresent, as the docs say."""

    image: Annotated[str, BeforeValidator(_image_ref)]
    pullPolicy: PullPolicy = "IfNotPresent"


def _cmd(value: Any) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            fail("must not be an empty list")
        return [
            at(i, lambda v: scalar_text(v, allow_empty=True), item) for i, item in enumerate(value)
        ]
    return scalar_text(value)


Cmd = Annotated[str | list[str], BeforeValidator(_cmd)]

_ENV_NAME = re.compile(r"[^=\s]+")


def _env_name(name: Any) -> str:
    text = scalar_text(name)
    if not _ENV_NAME.fullmatch(text):
        fail(f"must be a variable name without '=' or spaces (got {describe(name)})")
    return text


def _env_value(value: Any) -> str:
    if value is None:
        fail('needs a value; write "" for an empty one')
    return scalar_text(value, allow_empty=True)


def _env(value: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item:
                fail(f'must be "NAME=value" (got {describe(item)})', field=i)
            name, _, val = item.partition("=")
            at(i, _env_name, name)
            if name in env:
                fail(f"sets {name} twice", field=i)
            env[name] = val
        return env
    if isinstance(value, dict):
        for key, val in value.items():
            name = at(str(key), _env_name, key)
            env[name] = at(str(key), _env_value, val)
        return env
    fail(f'must be a list of "NAME=value" or a mapping NAME: value (got {describe(value)})')


Env = Annotated[dict[str, str], BeforeValidator(_env)]

_SIZE = re.compile(r"(0|[1-9][0-9]*)\s*(|b|[kmgt]i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MAX_BYTES = 2**53


def parse_size(text: str) -> int | None:
    """``"1g"`` → 1073741824. Units k, m, g, t are powers of 1024 (as Docker's)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        return None
    unit = match[2].lower()[:1]
    return int(match[1]) * _SIZE_UNITS[unit]


def _shm_size(value: Any) -> int:
    rule = 'must be a number of bytes or a size like "512m" or "1g"'
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (parsed := parse_size(value)) is not None:
        size = parsed
    else:
        hint = number_text_hint(value) if isinstance(value, str) else None
        fail(f"{hint or rule} (got {describe(value)})")
    if not 0 < size <= _MAX_BYTES:
        fail(f"{rule}, more than 0 (got {describe(value)})")
    return size


ShmSize = Annotated[int, BeforeValidator(_shm_size)]

_DURATION = re.compile(r"([1-9][0-9]*)\s*([smhd])", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """``"90m"`` → 5400. ``text`` must already be a valid ``maxRunTime``."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return int(match[1]) * _SECONDS[match[2].lower()]


def _max_run_time(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value}s"
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        return f"{match[1]}{match[2].lower()}"
    fail(f'must be a duration like "30m", "12h" or "2d" (s, m, h, d) (got {describe(value)})')


MaxRunTime = Annotated[str, BeforeValidator(_max_run_time)]
"""Normalised to ``<N><s|m|h|d>``; a bare integer means seconds."""


class Config(Spec):
    """How the container runs. Any other key (Docker options) is rejected."""

    cmd: Cmd | None = None
    env: Env = Field(default_factory=dict)
    affinity: Affinity = "First"
    restartPolicy: RestartPolicy = "Never"
    shmSize: ShmSize | None = None
    maxRunTime: MaxRunTime | None = None


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
    count: NonNegInt = 1


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
    "host access (bind mounts, privileged mode, capabilities, devices, host namespaces, "
    "raw Docker options) is admin-only"
)

__all__ = [
    "ADMIN_ONLY_KEYS",
    "ADMIN_ONLY_REASON",
    "Config",
    "CpuSelector",
    "GpuSelector",
    "Image",
    "Network",
    "NodeSelector",
    "Port",
    "Replica",
    "Selectors",
    "VolumeMount",
    "WorkloadSpec",
    "duration_seconds",
    "parse_size",
]
