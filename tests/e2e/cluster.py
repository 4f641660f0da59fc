"""Process helpers for the end-to-end tests: real ``dora server …`` processes, the real
``dora`` CLI, the real Docker engine, on loopback addresses only.

Every service is a separate process started by pid (``start_new_session``), its output
in a log file, stopped by that pid (SIGTERM, then SIGKILL) — never by name. Every
container the agents create carries ``dora-e2e.session=<SESSION>`` (through
``DORA_EXTRA_LABELS``), and teardown removes exactly those. Data directories are
temporary directories removed at teardown.

Waits poll a condition with a deadline (`wait_for`); nothing sleeps in place of a wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

SESSION = uuid.uuid4().hex[:12]
E2E_LABEL = "dora-e2e.session"
ZONE = "dora-cluster-1"
"""The admin guide's zone."""
SECRET = "aVeryLongSecretEncrypted"
"""The admin guide's API secret (a test value, never a real one)."""
DB_NAME = "dora-db-1"
"""The admin guide's database name."""

# Variables of the parent environment that would change what a child process does.
_SCRUBBED = (
    "ZONE",
    "secret",
    "DORA_SECRET",
    "INIT_DB",
    "DB_NAME",
    "CONTACT_POINTS",
    "PORT",
    "HOST",
    "HOST_IP",
    "API_ENDPOINT",
    "API_TOKEN",
    "NODE_NAME",
    "DORA_DATA_DIR",
    "DORA_CONFIG",
    "DORA_PROFILE",
    "DORA_API_SERVER",
    "DORA_TOKEN",
    "DOCKER_HOST",
)
TOKEN_LINE = re.compile(r"token[^\n]*?:\s*(\S+)\s*$", re.I)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("DORA_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port(host: str) -> int:
    """A TCP port on `host` that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], T | None],
    *,
    within: float,
    what: str,
    interval: float = 0.1,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy (returned); fail after
    `within` seconds, with `context()` (e.g. log tails) in the message."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {within:g} s waiting for {what}{extra}")
        time.sleep(interval)


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """A `dora get` table: its header words, and each row cut at the header's column
    starts (cells such as the CPU model hold spaces)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 2 and set(lines[1]) == {"-"}, f"not a table:\n{text}"
    header = lines[0].split()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    bounds = [*starts[1:], None]
    rows = [[line[a:b].strip() for a, b in zip(starts, bounds, strict=True)] for line in lines[2:]]
    return header, rows


# ---------------------------------------------------------------------------- services


class Service:
    """One long-running ``python -m dora.cli.main …`` process, its output in a file."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path):
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.starts = 0

    def start(self) -> Service:
        assert not self.alive(), f"{self.name} is already running"
        self._close_log()
        self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"--- start {self.starts} ---\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dora.cli.main", *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        """Send `sig` to this process (by pid)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill9(self) -> None:
        """SIGKILL by pid and reap."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send `sig` by pid, wait, SIGKILL if it does not end. Idempotent."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused process could not end
                os.kill(proc.pid, sig)
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

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log, without the HTTP access lines of the API."""
        text = [line for line in self.log_text().splitlines() if '" 200' not in line][-lines:]
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(text)


class Api(Service):
    """``dora server api`` bound to one loopback address."""

    def __init__(
        self,
        name: str,
        host: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        port: int | None = None,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        super().__init__(
            name, ["server", "api", "--host", host, "--port", str(self.port)], env, log_dir
        )

    def wait_ready(self, within: float = 30.0) -> Api:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            return False

        wait_for(ready, within=within, what=f"{self.name} /readyz", context=self.tail)
        return self


# -------------------------------------------------------------------------- the cluster


@dataclass
class Paths:
    root: Path
    data: Path
    logs: Path
    yaml: Path
    config: Path


class Cluster:
    """The services of one test module, their data directory, and teardown.

    ``data`` holds the shared SQLite file (both API replicas and the schedulers get the
    same ``DORA_DATA_DIR`` and ``DB_NAME``); ``config`` is the CLI's ``DORA_CONFIG``.
    """

    def __init__(self, prefix: str = "dora-e2e-") -> None:
        root = Path(tempfile.mkdtemp(prefix=prefix))
        self.paths = Paths(root, root / "data", root / "logs", root / "yaml", root / "cli.yaml")
        for folder in (self.paths.data, self.paths.logs, self.paths.yaml):
            folder.mkdir()
        self.services: list[Service] = []

    # -- environment ------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        """The SQLite file every API replica and scheduler of this cluster shares."""
        return self.paths.data / f"{DB_NAME}.sqlite3"

    def store_env(self, **extra: str) -> dict[str, str]:
        return base_env(DORA_DATA_DIR=str(self.paths.data), DB_NAME=DB_NAME, **extra)

    def cli_env(self, **extra: str) -> dict[str, str]:
        return base_env(DORA_CONFIG=str(self.paths.config), **extra)

    # -- services ---------------------------------------------------------------------
    def api(self, name: str, host: str, *, init_db: bool, **env: str) -> Api:
        extra = {"ZONE": ZONE, "secret": SECRET, "HOST_IP": host, **env}
        if init_db:
            extra["INIT_DB"] = "true"
        service = Api(name, host, self.store_env(**extra), self.paths.logs)
        self.services.append(service)
        return service

    def scheduler(self, name: str, *, zone: str = ZONE, **env: str) -> Service:
        service = Service(
            name, ["server", "scheduler"], self.store_env(ZONE=zone, **env), self.paths.logs
        )
        self.services.append(service)
        return service

    def agent(self, name: str, api: Api, node: str, token: str, **env: str) -> Service:
        extra = {
            "API_ENDPOINT": api.url,
            "NODE_NAME": node,
            "API_TOKEN": token,
            "ZONE": ZONE,
            "DORA_EXTRA_LABELS": f"{E2E_LABEL}={SESSION}",
            "DORA_STOP_GRACE_S": "1",
            "DORA_API_BACKOFF_MAX_S": "1",
            **env,
        }
        service = Service(name, ["server", "node"], base_env(**extra), self.paths.logs)
        self.services.append(service)
        return service

    # -- the CLI ----------------------------------------------------------------------
    def dora(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``dora`` CLI with this cluster's ``DORA_CONFIG``."""
        done = subprocess.run(
            [sys.executable, "-m", "dora.cli.main", *args],
            env=self.cli_env(**(env or {})),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"dora {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def dora_json(self, *args: str, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """``dora get … -o json`` as a list of records (one named record: a list of one)."""
        out = json.loads(self.dora(*args, "-o", "json", env=env).stdout)
        return [out] if isinstance(out, dict) else list(out)

    def write_yaml(self, name: str, text: str) -> Path:
        path = self.paths.yaml / name
        path.write_text(text)
        return path

    # -- teardown ---------------------------------------------------------------------
    def tails(self) -> str:
        return "\n".join(s.tail() for s in self.services)

    def errors(self) -> str:
        """Every service's warnings, errors and tracebacks so far, for a failed test's
        report (the data directory, logs included, goes with the cluster)."""
        out = []
        for service in self.services:
            lines = service.log_text().splitlines()
            picked = [
                line
                for i, line in enumerate(lines)
                if "level=ERROR" in line
                or "level=WARNING" in line
                or "Traceback" in line
                or any("Traceback" in before for before in lines[max(0, i - 40) : i])
            ]
            if picked:
                out.append(f"--- {service.name} ({service.log_path}) ---")
                out.extend(picked[-200:])
        return "\n".join(out)

    def close(self, *, keep_logs_on: bool = False) -> None:
        """Stop every service by pid (agents first, then schedulers, then APIs), remove
        this session's containers, delete the data directory."""
        for service in reversed(self.services):
            service.stop()
        remove_session_containers()
        if keep_logs_on:
            print(self.tails())
        shutil.rmtree(self.paths.root, ignore_errors=True)


@contextlib.contextmanager
def cluster_context(prefix: str = "dora-e2e-") -> Iterator[Cluster]:
    cluster = Cluster(prefix)
    failed = True
    try:
        yield cluster
        failed = False
    finally:
        cluster.close(keep_logs_on=failed)


# ------------------------------------------------------------------------------ docker


def docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class DockerContainer:
    id: str
    state: str
    node: str
    workspace: str
    name: str
    uid: str


def session_containers(*labels: str) -> list[DockerContainer]:
    """This session's containers (every state) carrying every ``key=value`` label."""
    fmt = (
        '{{.ID}}\t{{.State}}\t{{.Label "dora.node"}}\t{{.Label "dora.workspace"}}'
        '\t{{.Label "dora.container"}}\t{{.Label "dora.uid"}}'
    )
    args = ["ps", "-a", "--no-trunc", "--format", fmt, "--filter", f"label={E2E_LABEL}={SESSION}"]
    for label in labels:
        args += ["--filter", f"label={label}"]
    out = []
    for line in docker(*args).splitlines():
        if line.strip():
            out.append(DockerContainer(*line.split("\t")))
    return out


def running(*labels: str) -> list[DockerContainer]:
    return [c for c in session_containers(*labels) if c.state == "running"]


def remove_session_containers() -> None:
    """Remove exactly the containers this session's agents created (by id)."""
    ids = [c.id for c in session_containers()]
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)


@contextlib.contextmanager
def write_lock(db: Path, timeout: float) -> Iterator[bool]:
    """Hold the SQLite database's write lock (``BEGIN IMMEDIATE``) for the ``with``
    block; yields False, holding nothing, when it is not free within `timeout`."""
    conn = sqlite3.connect(db, timeout=timeout, isolation_level=None)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            yield False
            return
        try:
            yield True
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def admin_token_from_log(log: Path) -> str:
    """What an admin does: ``grep -i token`` the first replica's log, take the token."""
    done = subprocess.run(
        ["grep", "-i", "token", str(log)], capture_output=True, text=True, check=False
    )
    tokens = [m.group(1) for line in done.stdout.splitlines() if (m := TOKEN_LINE.search(line))]
    tokens = [t for t in tokens if t.count(".") == 2]  # a JWT: header.claims.signature
    assert len(tokens) == 1, f"expected one admin token line, found:\n{done.stdout}"
    return tokens[0]
