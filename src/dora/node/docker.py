"""The Docker driver: one assignment → one Docker container, through ``aiodocker``.

Containers
    Named ``dora.<workspace>.<container>`` and labelled ``dora.zone``,
    ``dora.workspace``, ``dora.workload``, ``dora.container``, ``dora.replica``,
    ``dora.node``, ``dora.uid``, ``dora.version`` and ``dora.run-hash``, plus the
    admin's ``DORA_EXTRA_LABELS``. The agent only ever lists, changes or removes
    containers labelled with its own ``dora.node`` and ``dora.zone``.

    ``Tty`` is false (logs are plain streams), there is no ``AutoRemove`` (exit codes
    and logs stay readable until the container is drained) and no Docker restart
    policy (the agent restarts, with backoff: `dora.node.reconcile`). ``Init`` is on:
    Docker's tiny init runs as PID 1, reaps zombies and forwards SIGTERM, so a
    ``sh -c …`` job stops within the grace period instead of being SIGKILLed.

Resources (from ``computed``, see `dora.node.spec`)
    GPUs, by ``DORA_GPU_MODE``: ``device-request`` (default) → ``DeviceRequests
    [{Driver: nvidia, DeviceIDs: ["0", …], Capabilities: [["gpu"]]}]`` (what
    ``docker run --gpus '"device=0,1"'`` sends; nvidia-container-toolkit) and
    ``NVIDIA_VISIBLE_DEVICES=<ids>``; ``runtime-env`` → only
    ``NVIDIA_VISIBLE_DEVICES=<ids>``, which the ``nvidia`` runtime reads when it is the
    engine's default (nvidia-docker2; `gpu_mode_warning` says at start when it is not).
    Either way a container without GPUs gets ``NVIDIA_VISIBLE_DEVICES=void`` so a CUDA
    image (which sets ``=all``) sees no GPU even where nvidia is the engine's default
    runtime. Whole CPUs → ``CpusetCpus``;
    millicores → ``NanoCpus = m × 10⁶``; ``memory`` → ``Memory``; ``ShmSize`` from
    ``computed.shm_size``, the spec's ``shmSize``, or `dora.node.spec.default_shm_size`.

Network
    ``none`` or ``bridge``; with bridge each port is published on
    ``nodePort + replica − 1`` (or a random host port without ``nodePort``), on
    ``DORA_PORT_BIND_IP`` (default: every address, as a NodePort is meant to be).

Volumes
    NFS → the named volume ``dora.volume.<workspace>.<volume>`` (local driver,
    ``type=nfs``, ``o=addr=<endpoint>,<DORA_NFS_OPTIONS>``, ``device=:<path>``), created
    on first use and mounted with ``ReadOnly`` when the mount is read-only. The NFS
    options carry no ``ro``: one named volume serves read-write and read-only mounts
    alike, and the read-only bind Docker makes of it cannot be remounted by a
    container without ``CAP_SYS_ADMIN`` (which it never has). Local → a bind of the
    admin's directory (``:ro`` when read-only); system folders are refused
    (`dora.node.spec.check_bind_path`).

Security
    ``SecurityOpt: [no-new-privileges]``, never ``Privileged``, no capabilities
    added, no host namespaces, no Docker socket, and no host path except Local
    storage directories.

Images
    ``IfNotPresent`` pulls only when the image is absent; ``Never`` fails with a clear
    reason when it is absent; ``Always`` pulls every time (its error text is the
    ``failed`` reason when the registry cannot be reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import aiodocker
import aiohttp

from dora.node.reconcile import Have, Key
from dora.node.settings import GpuMode
from dora.node.spec import RunSpec, VolumeSpec

log = logging.getLogger("dora.node.docker")

LABEL_ZONE = "dora.zone"
LABEL_WORKSPACE = "dora.workspace"
LABEL_WORKLOAD = "dora.workload"
LABEL_CONTAINER = "dora.container"
LABEL_REPLICA = "dora.replica"
LABEL_NODE = "dora.node"
LABEL_UID = "dora.uid"
LABEL_VERSION = "dora.version"
LABEL_RUN_HASH = "dora.run-hash"
LABEL_MANAGED = "dora.managed-by"

NO_NVIDIA = "this node has no NVIDIA container runtime"
DEFAULT_NFS_OPTIONS = "nfsvers=4"


class DriverError(Exception):
    """A Docker operation failed; ``reason`` is what the container reports."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class NameTaken(DriverError):
    """A container with the name exists already (a race with another create)."""


def parse_docker_time(value: Any) -> float | None:
    """Docker's RFC 3339 timestamps (nanoseconds, ``Z``) → Unix seconds; the zero
    time ``0001-01-01T00:00:00Z`` → None."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, tail = text.partition(".")
    if dot:
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def node_labels(zone: str, node: str) -> dict[str, str]:
    return {LABEL_ZONE: zone, LABEL_NODE: node}


def label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(labels.items())]


def container_labels(
    run: RunSpec, *, zone: str, node: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    labels = dict(extra or {})
    labels.update(
        {
            LABEL_ZONE: zone,
            LABEL_WORKSPACE: run.workspace,
            LABEL_WORKLOAD: run.workload,
            LABEL_CONTAINER: run.name,
            LABEL_REPLICA: str(run.replica),
            LABEL_NODE: node,
            LABEL_UID: run.uid,
            LABEL_VERSION: str(run.version),
            LABEL_RUN_HASH: run.run_hash,
            LABEL_MANAGED: "dora-node",
        }
    )
    return labels


def _hostname(run: RunSpec) -> str:
    text = "".join(c if c.isalnum() or c == "-" else "-" for c in run.name.lower())
    return text.strip("-")[:63] or "dora"


def nfs_volume_options(
    volume: VolumeSpec, nfs_options: str = DEFAULT_NFS_OPTIONS
) -> dict[str, str]:
    opts = f"addr={volume.endpoint}"
    if nfs_options:
        opts += f",{nfs_options}"
    return {"type": "nfs", "o": opts, "device": f":{volume.path}"}


def container_config(
    run: RunSpec,
    *,
    zone: str,
    node: str,
    extra_labels: Mapping[str, str] | None = None,
    port_bind_ip: str = "",
    stop_grace_s: int = 10,
    init: bool = True,
    gpu_mode: GpuMode = "device-request",
) -> dict[str, Any]:
    """The ``POST /containers/create`` body for `run` (pure; see the module doc)."""
    env = list(run.env)
    env += [
        f"DORA_ZONE={zone}",
        f"DORA_NODE={node}",
        f"DORA_WORKSPACE={run.workspace}",
        f"DORA_WORKLOAD={run.workload}",
        f"DORA_CONTAINER={run.name}",
        f"DORA_REPLICA={run.replica}",
    ]
    host: dict[str, Any] = {
        "NetworkMode": run.network_mode,
        "SecurityOpt": ["no-new-privileges"],
        "Privileged": False,
        "Init": init,
        "RestartPolicy": {"Name": "no"},
        "ShmSize": run.effective_shm_size(),
    }
    if run.gpus:
        ids = [str(g) for g in run.gpus]
        if gpu_mode == "device-request":
            host["DeviceRequests"] = [
                {"Driver": "nvidia", "Count": 0, "DeviceIDs": ids, "Capabilities": [["gpu"]]}
            ]
        env.append(f"NVIDIA_VISIBLE_DEVICES={','.join(ids)}")
    else:
        env.append("NVIDIA_VISIBLE_DEVICES=void")
    if run.cpus:
        host["CpusetCpus"] = ",".join(str(c) for c in run.cpus)
    elif run.millicores:
        host["NanoCpus"] = run.millicores * 1_000_000
    if run.memory:
        host["Memory"] = run.memory
    mounts: list[dict[str, Any]] = []
    binds: list[str] = []
    for volume in run.volumes:
        if volume.storage_kind == "NFS":
            mounts.append(
                {
                    "Type": "volume",
                    "Source": volume.docker_volume,
                    "Target": volume.target,
                    "ReadOnly": volume.read_only,
                }
            )
        else:
            # Binds (not Mounts) so Docker creates a missing <mountpath>/<ws>/<vol>.
            binds.append(f"{volume.path}:{volume.target}:{'ro' if volume.read_only else 'rw'}")
    if mounts:
        host["Mounts"] = mounts
    if binds:
        host["Binds"] = binds
    config: dict[str, Any] = {
        "Image": run.image,
        "Env": env,
        "Labels": container_labels(run, zone=zone, node=node, extra=extra_labels),
        "Hostname": _hostname(run),
        "Tty": False,
        "OpenStdin": False,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "StopTimeout": stop_grace_s,
        "HostConfig": host,
    }
    if run.argv is not None:
        config["Cmd"] = list(run.argv)
    if run.network_mode == "bridge" and run.ports:
        exposed: dict[str, dict[str, Any]] = {}
        bindings: dict[str, list[dict[str, str]]] = {}
        for port in run.ports:
            name = f"{port.port}/{port.protocol}"
            exposed[name] = {}
            host_port = run.host_port(port)
            bindings.setdefault(name, []).append(
                {"HostIp": port_bind_ip, "HostPort": "" if host_port is None else str(host_port)}
            )
        config["ExposedPorts"] = exposed
        host["PortBindings"] = bindings
    return config


def have_from_inspect(data: Mapping[str, Any]) -> Have | None:
    """A `Have` from ``GET /containers/{id}/json``; None without dora labels."""
    config = data.get("Config") or {}
    labels = config.get("Labels") or {}
    workspace, name = labels.get(LABEL_WORKSPACE), labels.get(LABEL_CONTAINER)
    if not workspace or not name:
        return None
    state = data.get("State") or {}
    exit_code = state.get("ExitCode")
    status = str(state.get("Status") or "unknown")
    started_at = parse_docker_time(state.get("StartedAt"))
    finished_at = parse_docker_time(state.get("FinishedAt"))
    if started_at is not None and finished_at is not None and finished_at < started_at:
        # The engine stamps StartedAt once the start call returns and FinishedAt from
        # the exit event: a process that exits at once can "finish" before it started.
        finished_at = started_at
    return Have(
        key=(str(workspace), str(name)),
        container_id=str(data.get("Id") or ""),
        uid=str(labels.get(LABEL_UID) or ""),
        run_hash=str(labels.get(LABEL_RUN_HASH) or ""),
        status=status,
        exit_code=int(exit_code) if isinstance(exit_code, int) and status != "created" else None,
        started_at=started_at,
        finished_at=finished_at,
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
    )


def gpu_mode_warning(mode: GpuMode, info: Mapping[str, Any]) -> str | None:
    """What to tell the admin at start about `mode` on an engine with this ``/info``;
    None when nothing is wrong. ``runtime-env`` only works where ``nvidia`` is the
    default runtime (else the GPU ids are an ignored variable and the containers run
    without GPUs); the agent warns and runs anyway."""
    if mode != "runtime-env":
        return None
    default = str(info.get("DefaultRuntime") or "")
    if default == "nvidia":
        return None
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    known = "it knows an nvidia runtime" if "nvidia" in runtimes else "it has no nvidia runtime"
    return (
        f"DORA_GPU_MODE=runtime-env but the engine's default runtime is {default or '?'!r} "
        f"({known}; runtimes: {', '.join(runtimes) or 'none'}): GPU containers will start "
        'without their GPUs. Set "default-runtime": "nvidia" in /etc/docker/daemon.json, '
        "or use DORA_GPU_MODE=device-request with nvidia-container-toolkit"
    )


def is_no_nvidia_error(message: str) -> bool:
    text = message.lower()
    return "could not select device driver" in text or (
        "nvidia" in text and ("runtime name" in text or "unknown runtime" in text)
    )


@dataclass(frozen=True)
class ListedContainer:
    """One row of ``GET /containers/json``: enough to know whether to re-inspect."""

    container_id: str
    key: Key
    state: str
    status: str


StateCallback = Callable[[str], Awaitable[None] | None]


class DockerDriver:
    """The agent's only way to Docker; scoped to one node's labels."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        *,
        node: str,
        zone: str,
        extra_labels: Mapping[str, str] | None = None,
        port_bind_ip: str = "",
        stop_grace_s: int = 10,
        pull_timeout_s: float = 1800.0,
        nfs_options: str = DEFAULT_NFS_OPTIONS,
        init: bool = True,
        gpu_mode: GpuMode = "device-request",
    ) -> None:
        self.docker = docker
        """The raw aiodocker client (exec, logs and stats for the :3001 server)."""
        self.node = node
        self.zone = zone
        self.extra_labels = dict(extra_labels or {})
        self.port_bind_ip = port_bind_ip
        self.stop_grace_s = stop_grace_s
        self.pull_timeout_s = pull_timeout_s
        self.nfs_options = nfs_options
        self.init = init
        self.gpu_mode: GpuMode = gpu_mode
        self._inspect_cache: dict[str, tuple[str, str, Have | None]] = {}

    @classmethod
    def connect(cls, url: str | None = None, **kwargs: Any) -> DockerDriver:
        """Open a client for ``url`` (``unix:///…``, ``tcp://…``), else DOCKER_HOST or
        the default socket."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
        try:
            client = aiodocker.Docker(url=url, timeout=timeout)
        except ValueError as exc:
            raise DriverError(
                f"no Docker engine found ({exc}): mount /var/run/docker.sock into the agent "
                "or set DOCKER_HOST",
                permanent=True,
            ) from None
        return cls(client, **kwargs)

    async def close(self) -> None:
        await self.docker.close()

    @property
    def labels(self) -> dict[str, str]:
        return node_labels(self.zone, self.node)

    # ------------------------------------------------------------------ raw calls
    async def _json(
        self,
        path: str,
        method: str = "GET",
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
    ) -> Any:
        return await self.docker._query_json(
            path, method, params=dict(params) if params else None, data=data
        )

    async def info(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._json("info"))

    async def version(self) -> dict[str, Any]:
        return await self.docker.version()

    # ------------------------------------------------------------------ listing
    async def list_containers(self) -> list[ListedContainer]:
        """Every container (running or not) labelled with this node and zone."""
        rows = await self._json(
            "containers/json",
            params={"all": True, "filters": {"label": label_filter(self.labels)}},
        )
        out = []
        for row in cast(list[dict[str, Any]], rows):
            labels = row.get("Labels") or {}
            # The engine filtered already; check again: never act on a foreign one.
            if labels.get(LABEL_NODE) != self.node or labels.get(LABEL_ZONE) != self.zone:
                continue
            key = (str(labels.get(LABEL_WORKSPACE, "")), str(labels.get(LABEL_CONTAINER, "")))
            out.append(
                ListedContainer(
                    container_id=str(row.get("Id")),
                    key=key,
                    state=str(row.get("State") or ""),
                    status=str(row.get("Status") or ""),
                )
            )
        return out

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], await self._json(f"containers/{container_id}/json"))
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise

    def forget(self, container_id: str) -> None:
        """Drop the cached inspection of a container (an event says it changed)."""
        self._inspect_cache.pop(container_id, None)

    def forget_all(self) -> None:
        self._inspect_cache.clear()

    async def haves(self) -> list[Have]:
        """This node's containers with their state; re-inspects only those whose
        listing changed since the last call (one list call otherwise)."""
        listed = await self.list_containers()
        alive = {c.container_id for c in listed}
        for cid in list(self._inspect_cache):
            if cid not in alive:
                del self._inspect_cache[cid]
        out: list[Have] = []
        for row in listed:
            cached = self._inspect_cache.get(row.container_id)
            # "Up 3 minutes" / "Exited (3) 2 seconds ago" change with time: key on the
            # state word and the exit code; events and our own actions `forget` the rest.
            status_key = row.status.split(")")[0] if row.state in ("exited", "dead") else ""
            if cached is None or cached[0] != row.state or cached[1] != status_key:
                data = await self.inspect(row.container_id)
                have = have_from_inspect(data) if data is not None else None
                self._inspect_cache[row.container_id] = (row.state, status_key, have)
            else:
                have = cached[2]
            if have is not None:
                out.append(have)
        return out

    # ------------------------------------------------------------------ images
    async def image_present(self, ref: str) -> bool:
        try:
            await self.docker.images.inspect(ref)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def pull(self, ref: str) -> None:
        try:
            async with asyncio.timeout(self.pull_timeout_s):
                await self.docker.images.pull(ref)
        except TimeoutError:
            raise DriverError(
                f"pull of {ref} took longer than {self.pull_timeout_s:g} s; giving up"
            ) from None
        except aiodocker.DockerError as exc:
            raise DriverError(f"pull of {ref} failed: {exc.message}") from None

    async def ensure_image(self, run: RunSpec, on_state: StateCallback | None = None) -> None:
        policy = run.pull_policy
        present = policy != "Always" and await self.image_present(run.image)
        if policy == "Always" or (policy == "IfNotPresent" and not present):
            await _call(on_state, "pulling")
            await self.pull(run.image)
            await _call(on_state, "creating")
            return
        if policy == "Never" and not present:
            raise DriverError(
                f"image {run.image} is not on this node and its pullPolicy is Never: load it "
                "on the node (docker load / docker pull) or use pullPolicy IfNotPresent",
                permanent=True,
            )

    # ------------------------------------------------------------------ volumes
    async def ensure_volume(self, volume: VolumeSpec) -> None:
        """Create the NFS named volume, or re-create it if its options changed and
        nothing uses it."""
        name = volume.docker_volume
        options = nfs_volume_options(volume, self.nfs_options)
        try:
            current = await self._json(f"volumes/{name}")
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise DriverError(f"volume {name}: {exc.message}") from None
            current = None
        if current is not None:
            if (current.get("Options") or {}) == options:
                return
            try:
                await self._json(f"volumes/{name}", "DELETE")
            except aiodocker.DockerError as exc:
                raise DriverError(
                    f"volume {name} exists with other NFS options and is in use: {exc.message}"
                ) from None
        body = {
            "Name": name,
            "Driver": "local",
            "DriverOpts": options,
            "Labels": {
                **self.extra_labels,
                LABEL_MANAGED: "dora-node",
                LABEL_WORKSPACE: volume.workspace,
                LABEL_ZONE: self.zone,
            },
        }
        try:
            await self._json("volumes/create", "POST", data=body)
        except aiodocker.DockerError as exc:
            raise DriverError(f"volume {name}: {exc.message}") from None

    # ------------------------------------------------------------------ lifecycle
    def config(self, run: RunSpec) -> dict[str, Any]:
        return container_config(
            run,
            zone=self.zone,
            node=self.node,
            extra_labels=self.extra_labels,
            port_bind_ip=self.port_bind_ip,
            stop_grace_s=self.stop_grace_s,
            init=self.init,
            gpu_mode=self.gpu_mode,
        )

    async def create(self, run: RunSpec, on_state: StateCallback | None = None) -> str:
        """Pull (per policy), create the volumes and the container, start it; returns
        the container id. Raises `DriverError` (the container may remain, created)."""
        await self.ensure_image(run, on_state)
        for volume in run.volumes:
            if volume.storage_kind == "NFS":
                await self.ensure_volume(volume)
        try:
            created = await self._json(
                "containers/create",
                "POST",
                params={"name": run.docker_name},
                data=self.config(run),
            )
        except aiodocker.DockerError as exc:
            if exc.status == 409:
                raise NameTaken(
                    f"a container named {run.docker_name} exists: {exc.message}"
                ) from None
            reason = _create_reason(exc.message)
            raise DriverError(reason, permanent=_permanent(exc.message)) from None
        container_id = str(created["Id"])
        await self.start(container_id)
        return container_id

    async def start(self, container_id: str) -> None:
        try:
            await self._json(f"containers/{container_id}/start", "POST")
        except aiodocker.DockerError as exc:
            if exc.status == 304:  # already started
                return
            reason = _create_reason(exc.message)
            raise DriverError(reason, permanent=_permanent(exc.message)) from None

    async def remove(self, container_id: str, *, grace_s: int | None = None) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove; a container
        that is already gone is fine."""
        grace = self.stop_grace_s if grace_s is None else grace_s
        try:
            await self._json(f"containers/{container_id}/stop", "POST", params={"t": grace})
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                self.forget(container_id)
                return
            if exc.status != 304:
                log.warning("event=stop_failed container=%s error=%s", container_id, exc.message)
        try:
            await self._json(f"containers/{container_id}", "DELETE", params={"force": True})
        except aiodocker.DockerError as exc:
            if exc.status != 404 and "already in progress" not in exc.message:
                raise DriverError(f"remove failed: {exc.message}") from None
        self.forget(container_id)

    async def pause(self, container_id: str) -> None:
        try:
            await self._json(f"containers/{container_id}/pause", "POST")
        except aiodocker.DockerError as exc:
            raise DriverError(f"pause failed: {exc.message}") from None

    async def unpause(self, container_id: str) -> None:
        try:
            await self._json(f"containers/{container_id}/unpause", "POST")
        except aiodocker.DockerError as exc:
            raise DriverError(f"unpause failed: {exc.message}") from None

    # ------------------------------------------------------------------ events
    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Container events of this node's containers, until the engine hangs up."""
        params = {
            "filters": json.dumps({"type": ["container"], "label": label_filter(self.labels)})
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with self.docker._query("events", params=params, timeout=timeout) as response:
            async for line in response.content:
                if not line.strip():
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event


def _permanent(message: str) -> bool:
    return is_no_nvidia_error(message) or "invalid" in message.lower()


def _create_reason(message: str) -> str:
    if is_no_nvidia_error(message):
        return f"{NO_NVIDIA}: {message}"
    return message


async def _call(callback: StateCallback | None, state: str) -> None:
    if callback is None:
        return
    result = callback(state)
    if result is not None:
        await result
