"""The contract between the scheduler and the node agent: what one assignment means.

The node agent long-polls ``GET /v1/nodes/{name}/assignments`` and receives every
Container record whose ``node`` is this node, as `dora.api.schemas.Assignment`:

``workspace``, ``name``
    The record's key. ``name`` is ``<workload>.<n>`` with the replica index ``n``
    counted from 1. The Docker container is named ``dora.<workspace>.<name>``.
``uid``
    Fixed when the record is created. A different uid under the same name is a new
    container: the agent removes the old Docker container and creates a fresh one.
``version``
    The record's version (every write bumps it, observed-state reports included);
    stored as the ``dora.version`` label, informational only.
``desired``
    ``run`` (create/start it, unpause it), ``pause`` (``docker pause`` a running one;
    nothing is created while paused), ``drain`` (stop with a grace period, remove,
    then report ``deleted``; the record can then be deleted).
``spec``
    A copy of the workload spec (`dora.model.specs.workload.WorkloadSpec`, as
    ``spec_dict()`` writes it). The agent reads ``image.image``, ``image.pullPolicy``
    (``IfNotPresent`` when absent), ``config.cmd`` (a string is split with
    `shlex.split`, a list is used as is, absent: the image's CMD), ``config.env``
    (a mapping or a list of ``"K=V"``), ``config.restartPolicy`` (``Never`` when
    absent), ``config.shmSize`` (a fallback for ``computed.shm_size``),
    ``network.mode`` (``none`` when absent) and ``network.ports``. Other keys are
    ignored, and so is ``replica`` (scaling is not a change of a container).
``computed``
    Written by the scheduler; every key is optional:

    ============  ============================================================
    key           meaning
    ============  ============================================================
    node          the node name (must be this node's)
    gpus          ``[int]`` NVML GPU indices (`GpuReport.index`), exclusive;
                  Docker ``DeviceRequests`` with driver ``nvidia``
    cpus          ``[int]`` logical CPU ids to pin (``CpusetCpus``); ``[]``
                  for a millicore request
    millicores    ``int`` shared CPU time (``NanoCpus = m × 10⁶``), used when
                  ``cpus`` is empty
    memory        ``int`` bytes, the memory limit (none when absent)
    shm_size      ``int`` bytes for ``/dev/shm`` (default: see `default_shm_size`)
    replica       ``int`` replica index n (default: parsed from ``name``)
    volumes       ``[{name, workspace, target, read_only, storage_kind,
                  endpoint, path}]``; ``name`` is the volume's name (its
                  Docker name ``dora.volume.<ws>.<name>`` is accepted too).
                  ``storage_kind`` ``NFS`` → the Docker named volume
                  ``dora.volume.<workspace>.<name>`` (local driver, nfs type,
                  ``addr=<endpoint>``, device ``:<path>``, where ``path`` is
                  ``<mountpath>/<workspace>/<volume>`` or the admin's
                  ``localPath``); ``Local`` → a bind mount of ``path``, a
                  directory the admin provides on every node; ``read_only``
                  mounts it read-only
    ============  ============================================================

Spec/computed changes on the same uid do not restart a running container (a running
job is never killed for an edit): they apply when the container is next (re)created,
and they reset its crash-loop history. To replace a container at once, the scheduler
writes a new record (new uid). `run_hash` identifies "what runs" for that purpose.

What the agent reports back (``ContainerReport`` → the record's ``observed``)
    ``state`` is one of ``creating``, ``pulling``, ``running``, ``restarting``,
    ``paused``, ``exited`` (with ``exit_code``), ``failed`` (with ``reason``),
    ``draining``, ``deleted``; plus ``container_id``, ``started_at``/``finished_at``
    (Unix seconds), ``restarts`` and ``uid`` (the record's uid the container was made
    for). ``exited`` and ``failed`` are final for this node: the agent will not start
    it again (restartPolicy ``Never``, ``OnFailure`` after exit 0, or it gave up: a
    crash loop, a permanent error). While it still retries it says ``creating`` (a
    failed start, the reason says why) or ``restarting`` (exited, starting again after
    the backoff). ``deleted``: drained and removed, the record may go. State machine
    and restart rules: `dora.node.reconcile`.

`parse_assignment` turns one assignment into a `RunSpec`, raising `SpecError` with a
readable reason when it cannot be run as given (the reason is reported as the
container's ``failed`` state).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
RestartPolicy = Literal["Never", "OnFailure", "Always"]
Desired = Literal["run", "drain", "pause"]

GIB = 1024**3
MIB = 1024**2
DEFAULT_SHM_NO_LIMIT = 2 * GIB
MIN_SHM = 64 * MIB

_DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_SIZE = re.compile(r"(0|[1-9][0-9]*)\s*(|b|[kmgt]i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": MIB, "g": GIB, "t": 1024 * GIB}

# Host paths a Local storage must never expose to a container, whatever the admin
# wrote: they hand out root on the node (the Docker socket, devices, kernel knobs).
FORBIDDEN_BIND_ROOTS = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lib/docker",
)


class SpecError(ValueError):
    """The assignment cannot be run as written; the message says why."""


@dataclass(frozen=True)
class PortSpec:
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    node_port: int | None = None
    """The first replica's host port; replica n publishes on node_port + n − 1."""


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    workspace: str
    target: str
    read_only: bool
    storage_kind: Literal["NFS", "Local"]
    endpoint: str
    path: str

    @property
    def docker_volume(self) -> str:
        return f"dora.volume.{self.workspace}.{self.name}"


@dataclass(frozen=True)
class RunSpec:
    """One assignment, parsed: everything the Docker driver needs."""

    workspace: str
    name: str
    uid: str
    version: int
    desired: Desired
    workload: str
    replica: int
    image: str
    pull_policy: PullPolicy = "IfNotPresent"
    argv: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    restart_policy: RestartPolicy = "Never"
    gpus: tuple[int, ...] = ()
    cpus: tuple[int, ...] = ()
    millicores: int | None = None
    memory: int | None = None
    shm_size: int | None = None
    network_mode: Literal["none", "bridge"] = "none"
    ports: tuple[PortSpec, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    run_hash: str = ""

    @property
    def docker_name(self) -> str:
        return docker_name(self.workspace, self.name)

    def effective_shm_size(self) -> int:
        return self.shm_size if self.shm_size is not None else default_shm_size(self.memory)

    def host_port(self, port: PortSpec) -> int | None:
        if port.node_port is None:
            return None
        return port.node_port + self.replica - 1


def docker_name(workspace: str, name: str) -> str:
    return f"dora.{workspace}.{name}"


def default_shm_size(memory: int | None) -> int:
    """The ``/dev/shm`` size when neither the scheduler nor the spec sets one.

    Docker's default is 64 MiB, which breaks PyTorch ``DataLoader(num_workers>0)``
    ("bus error … insufficient shared memory"): workers pass batches through
    ``/dev/shm``. Pages written there are charged to the container's memory cgroup,
    so the size is only a ceiling, not a reservation. We therefore allow half of the
    memory limit (at least 64 MiB) — room for several batches in flight while the
    other half stays for the process itself — and 2 GiB when there is no limit, which
    fits typical image batches without letting one container fill the host's RAM
    through a tmpfs.
    """
    if memory is None or memory <= 0:
        return DEFAULT_SHM_NO_LIMIT
    return max(MIN_SHM, memory // 2)


def parse_size(value: Any) -> int | None:
    """Bytes from an int or ``"512m"`` / ``"1g"`` (powers of 1024, as Docker's)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and value > 0:
        return int(value)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            size = int(match[1]) * _SIZE_UNITS[match[2].lower()[:1]]
            return size if size > 0 else None
    return None


def run_hash(spec: Mapping[str, Any], computed: Mapping[str, Any] | None) -> str:
    """Identifies what a container runs; the replica count is not part of it."""
    trimmed = {k: v for k, v in spec.items() if k != "replica"}
    blob = json.dumps([trimmed, computed or {}], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int_list(value: Any, what: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise SpecError(f"computed.{what} must be a list of integers (got {value!r})")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise SpecError(f"computed.{what} must be a list of integers >= 0 (got {item!r})")
        out.append(item)
    return tuple(out)


def _opt_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"computed.{what} must be an integer >= 0 (got {value!r})")
    return value


def _argv(cmd: Any) -> tuple[str, ...] | None:
    if cmd is None or cmd == "":
        return None
    if isinstance(cmd, str):
        try:
            parts = shlex.split(cmd)
        except ValueError as exc:
            raise SpecError(f"config.cmd cannot be split like a shell line: {exc}") from None
        return tuple(parts) or None
    if isinstance(cmd, list | tuple):
        if not cmd:
            return None
        return tuple(str(c) for c in cmd)
    raise SpecError(f"config.cmd must be a string or a list (got {type(cmd).__name__})")


def _env(env: Any) -> tuple[str, ...]:
    if env is None:
        return ()
    if isinstance(env, Mapping):
        return tuple(f"{k}={'' if v is None else v}" for k, v in env.items())
    if isinstance(env, list | tuple):
        out = []
        for item in env:
            if not isinstance(item, str) or "=" not in item:
                raise SpecError(f'config.env entries must be "NAME=value" (got {item!r})')
            out.append(item)
        return tuple(out)
    raise SpecError("config.env must be a mapping or a list of NAME=value")


def _ports(network: Mapping[str, Any]) -> tuple[PortSpec, ...]:
    ports = network.get("ports") or []
    if not isinstance(ports, list):
        raise SpecError("network.ports must be a list")
    out = []
    for item in ports:
        entry = _dict(item)
        port = entry.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise SpecError(f"network.ports: port must be 1-65535 (got {port!r})")
        protocol = str(entry.get("protocol") or "tcp").lower()
        if protocol not in ("tcp", "udp"):
            raise SpecError(f"network.ports: protocol must be tcp or udp (got {protocol!r})")
        node_port = entry.get("nodePort")
        if node_port is not None and (
            isinstance(node_port, bool) or not isinstance(node_port, int) or node_port <= 0
        ):
            raise SpecError(f"network.ports: nodePort must be a port number (got {node_port!r})")
        out.append(PortSpec(port=port, protocol=protocol, node_port=node_port))  # type: ignore[arg-type]
    return tuple(out)


def check_bind_path(path: str) -> str:
    """A Local storage path, normalised; refuses relative paths and system folders."""
    if not path.startswith("/") or "\0" in path or ":" in path:
        raise SpecError(f"Local storage path {path!r} must be an absolute path without ':'")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if any(part == ".." for part in path.split("/")):
        raise SpecError(f"Local storage path {path!r} must not contain '..'")
    if norm in FORBIDDEN_BIND_ROOTS or "docker.sock" in norm:
        raise SpecError(f"Local storage path {norm} is a system folder; refusing to mount it")
    for root in ("/proc", "/sys", "/dev", "/boot", "/etc", "/var/run", "/run", "/var/lib/docker"):
        if norm.startswith(root + "/"):
            raise SpecError(f"Local storage path {norm} is under {root}; refusing to mount it")
    return norm


def _volumes(computed: Mapping[str, Any], workspace: str) -> tuple[VolumeSpec, ...]:
    raw = computed.get("volumes") or []
    if not isinstance(raw, list):
        raise SpecError("computed.volumes must be a list")
    out = []
    for item in raw:
        v = _dict(item)
        name = str(v.get("name") or "")
        ws = str(v.get("workspace") or workspace)
        prefix = f"dora.volume.{ws}."
        if name.startswith(prefix):  # the Docker volume name, as the scheduler writes it
            name = name[len(prefix) :]
        target = str(v.get("target") or (f"/{name}" if name else ""))
        if not name or not _DOCKER_NAME.fullmatch(name) or not _DOCKER_NAME.fullmatch(ws):
            raise SpecError(f"computed.volumes: bad volume name {name!r} in {ws!r}")
        if not target.startswith("/") or posixpath.normpath(target) == "/":
            raise SpecError(f"computed.volumes: target of {name} must be an absolute path not /")
        kind = str(v.get("storage_kind") or "NFS")
        if kind not in ("NFS", "Local"):
            raise SpecError(f"computed.volumes: storage_kind of {name} must be NFS or Local")
        path = str(v.get("path") or "")
        endpoint = str(v.get("endpoint") or "")
        if kind == "NFS":
            if not endpoint or not path.startswith("/"):
                raise SpecError(f"computed.volumes: NFS volume {name} needs endpoint and path")
        else:
            path = check_bind_path(path)
        out.append(
            VolumeSpec(
                name=name,
                workspace=ws,
                target=posixpath.normpath(target),
                read_only=bool(v.get("read_only", False)),
                storage_kind=kind,  # type: ignore[arg-type]
                endpoint=endpoint,
                path=path,
            )
        )
    return tuple(out)


def _replica(name: str, computed: Mapping[str, Any]) -> int:
    value = computed.get("replica")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    _, _, tail = name.rpartition(".")
    return int(tail) if tail.isdigit() and int(tail) >= 1 else 1


def parse_assignment(a: Mapping[str, Any]) -> RunSpec:
    """One assignment (as the API sends it, a JSON object) → `RunSpec`."""
    workspace = str(a.get("workspace") or "")
    name = str(a.get("name") or "")
    if not _DOCKER_NAME.fullmatch(workspace) or not _DOCKER_NAME.fullmatch(name):
        raise SpecError(f"{workspace}/{name} is not a valid container name for Docker")
    desired = str(a.get("desired") or "run")
    if desired not in ("run", "drain", "pause"):
        raise SpecError(f"unknown desired state {desired!r}")
    spec = _dict(a.get("spec"))
    computed = _dict(a.get("computed"))
    image = _dict(spec.get("image"))
    config = _dict(spec.get("config"))
    network = _dict(spec.get("network"))
    image_ref = str(image.get("image") or "")
    if not image_ref or any(c.isspace() for c in image_ref):
        raise SpecError(f"spec.image.image must be an image reference (got {image_ref!r})")
    pull = str(image.get("pullPolicy") or "IfNotPresent")
    if pull not in ("Always", "IfNotPresent", "Never"):
        raise SpecError(f"spec.image.pullPolicy must be Always, IfNotPresent or Never ({pull!r})")
    restart = str(config.get("restartPolicy") or "Never")
    if restart not in ("Never", "OnFailure", "Always"):
        raise SpecError(f"config.restartPolicy must be Never, OnFailure or Always ({restart!r})")
    mode = str(network.get("mode") or "none")
    if mode not in ("none", "bridge"):
        raise SpecError(f"network.mode {mode!r} is not allowed (none or bridge)")
    shm = computed.get("shm_size")
    shm_size = parse_size(shm) if shm is not None else parse_size(config.get("shmSize"))
    workload = str(computed.get("workload") or name.rpartition(".")[0] or name)
    version = a.get("version")
    return RunSpec(
        workspace=workspace,
        name=name,
        uid=str(a.get("uid") or ""),
        version=version if isinstance(version, int) else 0,
        desired=desired,  # type: ignore[arg-type]
        workload=workload,
        replica=_replica(name, computed),
        image=image_ref,
        pull_policy=pull,  # type: ignore[arg-type]
        argv=_argv(config.get("cmd")),
        env=_env(config.get("env")),
        restart_policy=restart,  # type: ignore[arg-type]
        gpus=_int_list(computed.get("gpus"), "gpus"),
        cpus=_int_list(computed.get("cpus"), "cpus"),
        millicores=_opt_int(computed.get("millicores"), "millicores"),
        memory=_opt_int(computed.get("memory"), "memory") or None,
        shm_size=shm_size,
        network_mode=mode,  # type: ignore[arg-type]
        ports=_ports(network) if mode == "bridge" else (),
        volumes=_volumes(computed, workspace),
        run_hash=run_hash(spec, computed),
    )
