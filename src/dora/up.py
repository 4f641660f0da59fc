"""`dora up`: the whole cluster on one machine, in one process.

API server + scheduler + a node agent for this machine, over an embedded SQLite file,
with an admin profile written for the CLI. State lives in the data directory
(``--data-dir``, default: the store's default data directory), so stopping and
starting again keeps everything: workloads, users, tokens.

What stopping (Ctrl-C) does: the API, scheduler and agent stop; containers keep
running, and the next `dora up` adopts them (nothing is killed, nothing duplicated).
Delete workloads first (`dora delete wk NAME`) to stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dora.api.bootstrap import ADMIN, token_record
from dora.api.settings import ApiSettings
from dora.auth import issue_token
from dora.node.settings import GpuMode
from dora.store import AlreadyExists, Key, NewRecord, NotFound, Store

LOCAL_ZONE = "local"
NODE_USER = "node"
NODE_ROLE = "node-rep"
SAMPLE_WORKLOAD = "hello"


class UpError(RuntimeError):
    """`dora up` cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class UpSettings:
    data_dir: Path
    port: int = 3000
    host: str = "127.0.0.1"
    zone: str = LOCAL_ZONE
    node_name: str = ""
    node_port: int = 3001
    """Where this machine's agent serves exec and logs (HTTPS, for the API only)."""
    sample: bool = False
    profile: str = "local"
    gpu_mode: GpuMode = "device-request"
    """How this machine's GPUs reach containers (``DORA_GPU_MODE``, `dora.node.settings`)."""


def local_node_name() -> str:
    """This machine's host name, made a valid node name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-_")
    return name or "local"


# --------------------------------------------------------------------------- docker


def docker_running() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=60)
    return done.returncode == 0


def ensure_docker(data_dir: Path, say: Callable[[str], None], wait_s: float = 60.0) -> None:
    """Find a running Docker engine, or start (as root on Debian: install) one."""
    if docker_running():
        return
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not is_root:
        raise UpError(
            "no Docker engine is running, and only root can start one here: start Docker "
            "(e.g. `sudo systemctl start docker`) or run `dora up` as root"
        )
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        if shutil.which("apt-get") is None:
            raise UpError("no Docker engine is installed: install Docker, then run `dora up`")
        say("installing Debian's docker.io (one time)…")
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "docker.io", "busybox-static"],
        ):
            done = subprocess.run(
                command,
                capture_output=True,
                check=False,
                timeout=900,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0:
                raise UpError(f"{' '.join(command)} failed: {done.stderr.decode()[-500:]}")
    say("starting the Docker engine (dockerd)…")
    log = (data_dir / "dockerd.log").open("ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if docker_running():
            return
        time.sleep(0.5)
    raise UpError(f"dockerd did not come up within {wait_s:.0f} s; see {data_dir}/dockerd.log")


# --------------------------------------------------------------------------- state


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """A small secret file (0600): read it, or create it with `make()`."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


async def _ensure(store: Store, key: Key, spec: dict[str, Any], **extra: Any) -> None:
    with contextlib.suppress(AlreadyExists):
        await store.create(NewRecord(key=key, spec=spec, owner=ADMIN, **extra), actor="up")


async def _token(store: Store, secret: str, user: str, workspace: str, path: Path) -> str:
    """The token kept in `path`, if the store still knows it; else a new one."""
    from dora.auth import InvalidToken, verify_token

    saved = await asyncio.to_thread(_read_optional, path)
    if saved:
        try:
            claims = verify_token(secret, saved, now=time.time())
            await store.get(Key("Token", "", "", claims.jti))
            return saved
        except (InvalidToken, NotFound):
            await asyncio.to_thread(path.unlink)
    token, claims = issue_token(
        secret, user=user, workspace=workspace, token_id="up", now=time.time()
    )
    await store.create(
        token_record(
            jti=claims.jti,
            user=user,
            workspace=workspace,
            token_id="up",
            created_by="up",
            expires_at=None,
        ),
        actor="up",
    )
    await asyncio.to_thread(read_or_create, path, lambda: token)
    return token


def _read_optional(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


async def prepare(store: Store, settings: UpSettings, secret: str) -> tuple[str, str]:
    """Records `dora up` needs beyond the bootstrap; returns (admin, node) tokens."""
    zone = settings.zone
    await _ensure(store, Key("Role", "", "", NODE_ROLE), {"permission": {"Node": ["Report"]}})
    await _ensure(
        store,
        Key("User", "", "", NODE_USER),
        {"resources": [{"kind": "Node", "zone": "All", "workspace": "All", "role": NODE_ROLE}]},
    )
    await _ensure(store, Key("Workspace", "", "", NODE_USER), {})
    await _ensure(
        store,
        Key("Node", zone, "", settings.node_name),
        {
            "endpoint": f"https://127.0.0.1:{settings.node_port}",
            "allow": ["CPUWorkload", "GPUWorkload"],
            "schedulingDisabled": False,
        },
    )
    admin = await _token(store, secret, ADMIN, ADMIN, settings.data_dir / "admin.token")
    node = await _token(store, secret, NODE_USER, NODE_USER, settings.data_dir / "node.token")
    return admin, node


def write_profile(name: str, server: str, token: str) -> Path:
    from dora.cli.config import Profile, config_path, load, save

    path = config_path()
    config = load(path)
    config.profiles[name] = Profile(server, token)
    config.current = name
    save(path, config)
    return path


# --------------------------------------------------------------------------- run


def sample_document(zone: str) -> dict[str, Any]:
    from dora.images import SAMPLE_IMAGE

    return {
        "apiVersion": "v1",
        "kind": "Workload",
        "metadata": {"name": SAMPLE_WORKLOAD, "zone": zone, "workspace": ADMIN},
        "spec": {
            "image": {"image": SAMPLE_IMAGE, "pullPolicy": "Never"},
            "selectors": {"cpu": {"count": "250m"}},
            "config": {
                "cmd": [
                    "sh",
                    "-c",
                    "echo Hello from Dora: this container runs on $(hostname) "
                    "with $(nproc) CPUs; uname -sm",
                ],
                "restartPolicy": "Never",
            },
        },
    }


async def run_sample(server: str, token: str, zone: str, say: Callable[[str], None]) -> None:
    """Apply the sample workload, wait for it to finish, show its output."""
    from dora.client import AsyncClient
    from dora.images import ensure_busybox_image

    if await asyncio.to_thread(ensure_busybox_image):
        say("built the sample image dora/hello:1 from busybox (no registry needed)")
    async with AsyncClient(server, token) as dora:
        with contextlib.suppress(Exception):
            await dora.delete("Workload", SAMPLE_WORKLOAD, zone=zone, workspace=ADMIN)
            await _wait_gone(dora, zone)
        result = await dora.apply(sample_document(zone))
        say(f"workload/{SAMPLE_WORKLOAD} {result.status}: dora get wk -g {ADMIN}")
        deadline = time.monotonic() + 120
        state = ""
        while time.monotonic() < deadline:
            wk = await dora.get("Workload", SAMPLE_WORKLOAD, zone=zone, workspace=ADMIN)
            state = wk.status or ""
            if state in ("Completed", "Failed"):
                break
            await asyncio.sleep(0.3)
    name = f"dora.{ADMIN}.{SAMPLE_WORKLOAD}.1"
    logs = await asyncio.to_thread(
        subprocess.run, ["docker", "logs", name], capture_output=True, text=True, check=False
    )
    say(f"workload/{SAMPLE_WORKLOAD} {state or 'did not finish in 120 s'}; its output:")
    for line in (logs.stdout + logs.stderr).strip().splitlines():
        say(f"  | {line}")


async def _wait_gone(dora: Any, zone: str) -> None:
    for _ in range(100):
        try:
            await dora.get("Workload", SAMPLE_WORKLOAD, zone=zone, workspace=ADMIN)
        except Exception:
            return
        await asyncio.sleep(0.2)


async def up(settings: UpSettings, say: Callable[[str], None], stop: asyncio.Event) -> None:
    import uvicorn

    from dora.api.app import create_app
    from dora.api.serve import StoppableServer
    from dora.node.agent import serve
    from dora.node.settings import NodeSettings
    from dora.scheduler.loop import Scheduler, SchedulerSettings
    from dora.store.config import StoreSettings, open_store

    data_dir = settings.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    await asyncio.to_thread(ensure_docker, data_dir, say)
    secret = read_or_create(data_dir / "secret", lambda: secrets.token_hex(32))
    store = await open_store(
        StoreSettings(backend="sqlite", db_name="dora", data_dir=data_dir, init_db=True)
    )
    announced: list[str] = []
    api_settings = ApiSettings(
        zone=settings.zone,
        secret=secret,
        init_db=True,
        host=settings.host,
        port=settings.port,
        data_dir=data_dir,
    )
    app = create_app(api_settings, store, announce=announced.append, close_store=False)
    server = StoppableServer(
        app,
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=3,
        ),
    )
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(server.serve(), name="api")]
    try:
        while not server.started:
            if tasks[0].done():
                tasks[0].result()
                raise UpError(f"the API could not listen on {settings.host}:{settings.port}")
            await asyncio.sleep(0.05)
        url = f"http://{settings.host}:{settings.port}"
        admin_token, node_token = await prepare(store, settings, secret)
        profile_path = write_profile(settings.profile, url, admin_token)
        scheduler = Scheduler(store, SchedulerSettings(zone=settings.zone))
        tasks.append(asyncio.create_task(scheduler.run(stop), name="scheduler"))
        node = NodeSettings(
            api_endpoint=url,
            node_name=settings.node_name,
            api_token=node_token,
            zone=settings.zone,
            port=settings.node_port,
            exec_bind="127.0.0.1",
            report_interval_s=2.0,
            gpu_mode=settings.gpu_mode,
        )
        tasks.append(asyncio.create_task(serve(node), name="agent"))
        say(
            f"Dora is up: API {url}, zone {settings.zone}, node {settings.node_name}, "
            f"data in {data_dir}"
        )
        say(f"CLI profile {settings.profile!r} written to {profile_path} (admin)")
        if settings.sample:
            await run_sample(url, admin_token, settings.zone, say)
        say("Next steps:")
        say("  dora get nodes                 this machine, READY")
        say("  dora apply -f examples/workload.yaml -g admin   (edit it first)")
        say("  dora get wk -A                 every workload")
        say("Press Ctrl-C to stop; running containers keep running and are adopted next time.")
        await _until_stopped(stop, tasks)
    finally:
        # Agent and scheduler first (they talk to the API and the store), then the API.
        stop.set()
        for task in reversed(tasks[1:]):
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        server.stop()
        await asyncio.gather(tasks[0], return_exceptions=True)
        await store.close()
        say("Dora stopped. Containers keep running; `dora up` adopts them again.")


async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for Ctrl-C, or for a component to die (then say which and stop)."""
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    for task in done:
        if task is not waiter and task.exception() is not None:
            raise UpError(f"{task.get_name()} stopped: {task.exception()}")


def run(settings: UpSettings, say: Callable[[str], None]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await up(settings, say, stop)

    asyncio.run(main())
