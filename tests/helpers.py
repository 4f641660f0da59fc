"""Shared helpers for tests that drive a real Dora API server process.

`ApiProcess` starts ``python -m dora.cli.main server api`` on a free 127.0.0.1 port
with its own SQLite directory, waits for ``/readyz``, reads the admin token from the
log and stops the process by its pid (SIGTERM, then SIGKILL). `server_fixture` turns
that into a pytest fixture. The factories (`make_role`, `make_user`, `make_token`,
`user_with_role`, the document builders) build a cluster's users, roles and tokens in
one line each, the way the admin guide does with YAML and ``dora token create``.

Every token the helpers see is remembered in `TOKENS_SEEN`, so a test can check that
no server log ever contains one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from dora.store import Key, NewRecord, Store
from dora.store.config import StoreSettings, open_store

T = TypeVar("T")

ZONE = "dora-cluster-1"
"""The admin guide's zone."""
SECRET = "aVeryLongSecretEncrypted"
"""The admin guide's API secret (a test fixture, never a real one)."""
DB_NAME = "dora-db-1"
ADMIN_TOKEN_LINE = re.compile(r"admin token[^\n]*?:\s*(\S+)\s*$", re.I | re.M)
TOKENS_SEEN: set[str] = set()
"""Every token the helpers created, parsed or were handed: none may reach a log."""

# Variables of the parent environment that would change what the child server does.
_SCRUBBED = ("ZONE", "secret", "INIT_DB", "DB_NAME", "CONTACT_POINTS", "PORT", "HOST", "HOST_IP")


def remember(token: str) -> str:
    TOKENS_SEEN.add(token)
    return token


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], T], *, within: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail the
    test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or condition}")
        time.sleep(interval)


class ApiProcess:
    """One real API server process on 127.0.0.1, its log in a file."""

    def __init__(
        self,
        data_dir: Path,
        *,
        init_db: bool = True,
        db_name: str = DB_NAME,
        env: Mapping[str, str] | None = None,
        name: str = "api",
        port: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"{name}-{self.port}.log"
        self.store_env = {"DORA_DATA_DIR": str(data_dir), "DB_NAME": db_name}
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.env.update(
            ZONE=ZONE,
            secret=SECRET,
            PYTHONUNBUFFERED="1",
            **self.store_env,
            **({"INIT_DB": "true"} if init_db else {}),
            **(env or {}),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> ApiProcess:
        assert self.proc is None, "already started"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        cmd = [sys.executable, "-m", "dora.cli.main", "server", "api"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> ApiProcess:
        """Poll /readyz until it answers 200; fail early (with the log) if the process
        exits, and after `timeout` seconds."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode} before it was "
                        f"ready:\n{self.log_text()[-4000:]}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.name} not ready after {timeout} s:\n{self.log_text()[-4000:]}"
                    )
                time.sleep(0.05)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end by itself; its exit status."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self._close_log()
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the server by pid, wait, SIGKILL if it does not go. Idempotent."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ApiProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it said ------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def admin_tokens_printed(self) -> list[str]:
        return [remember(t) for t in ADMIN_TOKEN_LINE.findall(self.log_text())]

    def admin_token(self) -> str:
        """The token of the log line containing ``admin token`` (exactly one)."""
        tokens = self.admin_tokens_printed()
        assert len(tokens) == 1, f"expected one admin token line, found {len(tokens)}"
        return tokens[0]

    # -- talking to it -----------------------------------------------------------------
    def client(
        self, token: str | None = None, *, local_address: str | None = None, timeout: float = 30
    ) -> httpx.Client:
        return client(self.url, token, local_address=local_address, timeout=timeout)

    def store_settings(self) -> StoreSettings:
        return StoreSettings.from_env(self.store_env)


def client(
    base_url: str,
    token: str | None = None,
    *,
    local_address: str | None = None,
    timeout: float = 30,
) -> httpx.Client:
    """An httpx client for the API; `token` goes in ``Authorization: Bearer``;
    `local_address` picks the source IP (any 127.0.0.x works on Linux)."""
    headers = {"Authorization": f"Bearer {remember(token)}"} if token else {}
    transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
    return httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)


def leaked_tokens(log: str, *, admin_token: str | None = None) -> list[str]:
    """Tokens seen by the tests that appear in `log` (the admin token may appear once,
    on its announcement line)."""
    leaks = []
    for token in TOKENS_SEEN:
        allowed = 1 if token == admin_token else 0
        if log.count(token) > allowed:
            leaks.append(token[:16] + "…")
    return leaks


def assert_no_token_in_log(api: ApiProcess) -> None:
    printed = api.admin_tokens_printed()
    leaks = leaked_tokens(api.log_text(), admin_token=printed[0] if printed else None)
    assert not leaks, f"{api.name} log contains tokens: {leaks}"


@contextlib.contextmanager
def api_replicas(data_dir: Path) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    """Replica A (INIT_DB=true, first start) and replica B (no INIT_DB) on one
    database in `data_dir`, both ready; no token in either log afterwards."""
    with ApiProcess(data_dir, name="replica-a") as a:
        a.wait_ready()
        with ApiProcess(data_dir, init_db=False, name="replica-b") as b:
            b.wait_ready()
            yield a, b
    assert_no_token_in_log(a)
    assert_no_token_in_log(b)


def server_fixture(
    *,
    scope: str = "module",
    env: Mapping[str, str] | Callable[[pytest.TempPathFactory], Mapping[str, str]] | None = None,
    name: str = "api",
) -> Any:
    """A pytest fixture yielding a started, ready `ApiProcess` (a fresh SQLite
    database each time it is set up); after stopping it, checks its log holds no token.
    `env` may be a function of pytest's `tmp_path_factory` (for folders it names)."""

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
        chosen = env(tmp_path_factory) if callable(env) else env
        with ApiProcess(tmp_path_factory.mktemp(name), env=chosen, name=name) as api:
            api.wait_ready()
            yield api
        assert_no_token_in_log(api)

    return _server


# ------------------------------------------------------------------------------ store


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    async def go() -> T:
        return await make()

    return asyncio.run(go())


def with_store(api: ApiProcess, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the server's own SQLite database from the test process and run `action`."""

    async def go() -> T:
        store = await open_store(api.store_settings())
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(go())


def create_container(
    api: ApiProcess,
    name: str,
    *,
    workspace: str,
    node: str = "",
    zone: str = ZONE,
    image: str = "busybox:1.36",
) -> Key:
    """Write a Container record directly (as the scheduler would)."""
    key = Key("Container", zone, workspace, name)
    workload = name.rsplit(".", 1)[0]
    record = NewRecord(
        key=key,
        spec={"image": {"image": image}, "replica": {"count": 1}},
        owner="scheduler",
        node=node,
        parent=workload,
        computed={"node": node} if node else None,
    )

    async def create(store: Store) -> Key:
        await store.create(record, actor="scheduler")
        return key

    return with_store(api, create)


# -------------------------------------------------------------------------- documents


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def doc(
    kind: str,
    name: str,
    spec: Mapping[str, Any] | None = None,
    *,
    zone: str | None = None,
    workspace: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if zone is not None:
        metadata["zone"] = zone
    if workspace is not None:
        metadata["workspace"] = workspace
    out: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    if spec is not None:
        out["spec"] = dict(spec)
    return out


def workload_doc(
    name: str,
    *,
    workspace: str | None = None,
    zone: str | None = None,
    replicas: int = 1,
    image: str = "busybox:1.36",
    volumes: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replica": {"count": replicas},
        "driver": "Docker",
        "selectors": {"cpu": {"product_name": "All", "count": 1}},
        "image": {"image": image, "pullPolicy": "IfNotPresent"},
        "config": {"cmd": "sleep 3600"},
    }
    if volumes:
        spec["volumes"] = [dict(v) for v in volumes]
    return doc("Workload", name, spec, zone=zone, workspace=workspace)


def volume_doc(
    name: str, *, workspace: str | None = None, storage: str = "dora.storage.01"
) -> dict[str, Any]:
    return doc("Volume", name, {"storage": storage}, zone=ZONE, workspace=workspace)


def local_storage_doc(name: str, mountpath: Path | str) -> dict[str, Any]:
    """A ``kind: Local`` Storage: its volumes are ``<mountpath>/<workspace>/<volume>``."""
    return doc("Storage", name, {"kind": "Local", "mountpath": str(mountpath)}, zone=ZONE)


def storage_mounts_env(tmp: pytest.TempPathFactory, storage: str = "dora.storage.01") -> dict:
    """``DORA_STORAGE_MOUNTS`` naming a plain folder as where the NFS `storage`'s export
    is mounted on the API host (so file operations on its volumes work in tests)."""
    return {"DORA_STORAGE_MOUNTS": f"{storage}={tmp.mktemp('nfs-export')}"}


def node_doc(name: str, *, zone: str = ZONE, allow: Sequence[str] = ("CPUWorkload",)) -> dict:
    return doc(
        "Node", name, {"endpoint": "https://127.0.0.41:3001", "allow": list(allow)}, zone=zone
    )


def grant(kind: str, role: str, *, zone: str = ZONE, workspace: str = "All") -> dict[str, str]:
    """One entry of ``User.spec.resources``."""
    return {"kind": kind, "zone": zone, "workspace": workspace, "role": role}


def role_doc(name: str, permission: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return doc("Role", name, {"permission": {k: list(v) for k, v in permission.items()}})


def user_doc(
    name: str, grants: Sequence[Mapping[str, str]], *, workspace: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"resources": [dict(g) for g in grants]}
    if workspace:
        spec["default"] = {"workspace": workspace, "zone": ZONE}
    return doc("User", name, spec)


# ------------------------------------------------------------------------- factories


def apply(
    c: httpx.Client, document: Mapping[str, Any], *, expect: int = 200, **params: str
) -> dict[str, Any]:
    """POST /v1/apply; assert the status; the JSON reply."""
    r = c.post("/v1/apply", json=dict(document), params=params)
    assert r.status_code == expect, f"apply {document.get('kind')}: {r.status_code} {r.text}"
    body: dict[str, Any] = r.json()
    return body


def apply_many(c: httpx.Client, documents: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """POST /v1/apply-many; assert every document succeeded; their results."""
    r = c.post("/v1/apply-many", json=[dict(d) for d in documents])
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    failed = [i for i in items if not i["ok"]]
    assert not failed, f"documents failed: {failed}"
    return [i["result"] for i in items]


@dataclass(frozen=True)
class Token:
    token: str
    jti: str
    user: str
    workspace: str


def make_token(
    admin: httpx.Client,
    user: str,
    workspace: str,
    token_id: str = "1",
    *,
    expires_in_s: int | None = None,
) -> Token:
    """``dora token create USER WORKSPACE ID``."""
    body: dict[str, Any] = {"user": user, "workspace": workspace, "id": token_id}
    if expires_in_s is not None:
        body["expires_in_s"] = expires_in_s
    r = admin.post("/v1/tokens", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    return Token(remember(out["token"]), out["jti"], user, workspace)


def make_workspace(admin: httpx.Client, name: str) -> None:
    apply(admin, doc("Workspace", name))


def make_role(admin: httpx.Client, name: str, permission: Mapping[str, Sequence[str]]) -> None:
    apply(admin, role_doc(name, permission))


def make_user(
    admin: httpx.Client,
    name: str,
    grants: Sequence[Mapping[str, str]],
    *,
    workspace: str | None = None,
) -> None:
    apply(admin, user_doc(name, grants, workspace=workspace))


def user_with_role(
    admin: httpx.Client,
    name: str,
    permission: Mapping[str, Sequence[str]],
    *,
    workspace: str,
    zone: str = ZONE,
    kind: str = "All",
    grant_workspace: str | None = None,
) -> Token:
    """Role ``<name>-role`` with `permission`, a user holding it for `kind` in
    (`zone`, `grant_workspace` or `workspace`), and a token with default `workspace`."""
    role = f"{name}-role"
    apply_many(
        admin,
        [
            role_doc(role, permission),
            user_doc(
                name,
                [grant(kind, role, zone=zone, workspace=grant_workspace or workspace)],
                workspace=workspace,
            ),
        ],
    )
    return make_token(admin, name, workspace)


# --------------------------------------------------------------------- the admin guide

SEED_YAML = """
---
apiVersion: v1
kind: Zone
metadata:
  name: dora-cluster-1
---
apiVersion: v1
kind: Storage
metadata:
  zone: dora-cluster-1
  name: dora.storage.01
spec:
  endpoint: 127.0.0.31
  mountpath: /dorastorage
  kind: NFS
---
apiVersion: v1
kind: Role
metadata:
  name: node-rep
spec:
  permission:
    Node:
      - report
---
apiVersion: v1
kind: User
metadata:
  name: node
spec:
  resources:
    - kind: Node
      zone: All
      workspace: All
      role: node-rep
---
apiVersion: v1
kind: Node
metadata:
  zone: dora-cluster-1
  name: node1
spec:
  endpoint: https://127.0.0.41:3001
  allow:
    - CPUWorkload
---
apiVersion: v1
kind: Node
metadata:
  zone: dora-cluster-1
  name: node2
spec:
  endpoint: https://127.0.0.42:3001
  allow:
    - GPUWorkload
---
apiVersion: v1
kind: Role
metadata:
  name: user
spec:
  permission:
    Workload: [Apply, Delete, Get, Describe, Pause, Resume, Event, Version]
    Container: [Apply, Delete, Get, Describe, Pause, Resume, Shell, Token, Log, Event]
    Volume: [Get, Describe, Use, Upload, Download, Ls, Sync]
    Project: [Apply, Delete, Get, Describe]
    Storage: [Get, Describe]
    CPU: [Get]
    GPU: [Get]
    Resourcecredit: [Get, Describe]
    Usercredit: [GetOne, Describe]
    Workspace: [Clone]
    User: [Credits]
---
apiVersion: v1
kind: Workspace
metadata:
  name: amedeo.setti
---
apiVersion: v1
kind: User
metadata:
  name: amedeo.setti
spec:
  default:
    workspace: amedeo.setti
    zone: dora-cluster-1
  resources:
    - kind: All
      zone: dora-cluster-1
      workspace: amedeo.setti
      role: user
  credits:
    - zone: dora-cluster-1
      weekly: 500
---
apiVersion: v1
kind: Volume
metadata:
  zone: dora-cluster-1
  group: amedeo.setti
  name: home
spec:
  storage: dora.storage.01
---
apiVersion: v1
kind: Resourcecredit
metadata:
  name: Tesla V100-SXM2-16GB
spec:
  product_name: Tesla V100-SXM2-16GB
  credit:
    per:
      hour: 2.5
  annotations:
    priceUnit: €
"""
"""The admin guide's documents, in its order (zone+storage, node role and user, nodes,
user role, workspace + user + credits, home volume, resource credit); its
10.10.10.x addresses replaced by loopback ones."""

SEED_USER = "amedeo.setti"
NODE_USER = "node"


def seed_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(SEED_YAML) if d]


def apply_seed(admin: httpx.Client) -> list[dict[str, Any]]:
    return apply_many(admin, seed_documents())


# ------------------------------------------------------------------------ fuzzing


def mint_admin_token(store_env: Mapping[str, str], log: Path | None = None) -> str:
    """A new admin token written straight into the server's database (as the
    bootstrap does), for a fuzzer that may revoke the token it was given. When `log`
    is given the token is appended to it, so the test can check no log repeats it."""
    from dora.api.bootstrap import token_record
    from dora.auth import issue_token

    token_id = unique("fuzz")
    token, claims = issue_token(
        SECRET, user="admin", workspace="admin", token_id=token_id, now=time.time()
    )
    record = token_record(
        jti=claims.jti,
        user="admin",
        workspace="admin",
        token_id=token_id,
        created_by="test",
        expires_at=None,
    )

    async def write() -> None:
        store = await open_store(StoreSettings.from_env(store_env))
        try:
            await store.create(record, actor="test")
        finally:
            await store.close()

    asyncio.run(write())
    if log is not None:
        with log.open("a") as f:
            f.write(token + "\n")
    return remember(token)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, valid one day."""
    cert, key = folder / "api-cert.pem", folder / "api-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key
