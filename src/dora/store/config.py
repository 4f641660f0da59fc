"""Open the store the environment names: the contract's ``CONTACT_POINTS``/``DB_NAME``.

===========================  =========================================================
variable                     meaning
===========================  =========================================================
``CONTACT_POINTS``           ``host:port,host:port`` → the CQL backend (issue 3);
                             unset or empty → the embedded SQLite file
``DB_NAME``                  database name (default ``dora``): the CQL keyspace, or the
                             SQLite file ``<DORA_DATA_DIR>/<DB_NAME>.sqlite3``
``INIT_DB``                  ``true`` → `open_store` creates the schema (idempotent)
``DORA_DATA_DIR``            SQLite directory; default ``$XDG_DATA_HOME/dora``, else
                             ``/var/lib/dora`` for root, else ``~/.local/share/dora``
``DORA_SQLITE_SYNCHRONOUS``  ``NORMAL`` (default) or ``FULL``; see `dora.store.sqlite`
``DORA_SQLITE_BUSY_S``       seconds a write waits for another process's write lock
                             before it fails (default 10)
===========================  =========================================================

The SQLite directory must be on a local disk, never NFS/SMB: SQLite's file locks and
WAL shared memory do not work across hosts. `open_store` refuses known network mounts.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dora.store.base import Store, StoreError
from dora.store.sqlite import SqliteStore, Synchronous

Backend = Literal["sqlite", "cql"]

DEFAULT_DB_NAME = "dora"
DEFAULT_CQL_PORT = 9042
DEFAULT_BUSY_S = 10.0
MAX_BUSY_S = 3600.0
NETWORK_FILESYSTEMS = frozenset(
    ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "fuse.sshfs", "9p", "ceph")
)
"""Filesystem types (as in /proc/mounts) where SQLite's locking is unreliable."""

# Letters, digits, ``_ . -``; no leading dot (hidden files, ``..``) and no separators.
_DB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("", "0", "false", "no", "off"))


@dataclass(frozen=True)
class StoreSettings:
    backend: Backend
    db_name: str = DEFAULT_DB_NAME
    data_dir: Path = Path(".")
    contact_points: tuple[tuple[str, int], ...] = ()
    init_db: bool = False
    synchronous: Synchronous = "NORMAL"
    busy_timeout: float = DEFAULT_BUSY_S

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / f"{self.db_name}.sqlite3"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] = os.environ, *, is_root: bool | None = None
    ) -> StoreSettings:
        """Read the settings; raises `StoreError` naming the bad variable."""
        if is_root is None:
            is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        contact_points = parse_contact_points(env.get("CONTACT_POINTS", ""))
        return cls(
            backend="cql" if contact_points else "sqlite",
            db_name=parse_db_name(env.get("DB_NAME", DEFAULT_DB_NAME)),
            data_dir=data_dir_from_env(env, is_root=is_root),
            contact_points=contact_points,
            init_db=parse_bool("INIT_DB", env.get("INIT_DB", "")),
            synchronous=parse_synchronous(env.get("DORA_SQLITE_SYNCHRONOUS", "NORMAL")),
            busy_timeout=parse_seconds("DORA_SQLITE_BUSY_S", env.get("DORA_SQLITE_BUSY_S", "")),
        )


def parse_contact_points(text: str) -> tuple[tuple[str, int], ...]:
    """``"a:9042, [::1]:9043, b"`` → ``(("a", 9042), ("::1", 9043), ("b", 9042))``."""
    points: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", item)
        if match is None:
            raise StoreError(f"CONTACT_POINTS: {item!r} is not host:port")
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4) or DEFAULT_CQL_PORT)
        if not 0 < port < 65536:
            raise StoreError(f"CONTACT_POINTS: port {port} of {item!r} is out of range")
        points.append((host, port))
    return tuple(points)


def parse_db_name(name: str) -> str:
    if "/" in name or "\\" in name or "\0" in name:
        raise StoreError(f"DB_NAME {name!r} must be a plain name, not a path")
    if not _DB_NAME.fullmatch(name):
        raise StoreError(
            f"DB_NAME {name!r}: use 1-100 letters, digits, '_', '.', '-', not starting with '.'"
        )
    return name


def parse_bool(variable: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise StoreError(f"{variable}={text!r}: expected true or false")


def parse_seconds(variable: str, text: str, default: float = DEFAULT_BUSY_S) -> float:
    """A positive number of seconds (at most an hour); empty → `default`."""
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise StoreError(f"{variable}={text!r}: expected a number of seconds") from None
    if not 0 < value <= MAX_BUSY_S:
        raise StoreError(f"{variable}={text!r}: expected more than 0 and at most {MAX_BUSY_S:g}")
    return value


def parse_synchronous(text: str) -> Synchronous:
    value = text.strip().upper()
    if value == "NORMAL":
        return "NORMAL"
    if value == "FULL":
        return "FULL"
    raise StoreError(f"DORA_SQLITE_SYNCHRONOUS={text!r}: expected NORMAL or FULL")


def data_dir_from_env(env: Mapping[str, str], *, is_root: bool) -> Path:
    if explicit := env.get("DORA_DATA_DIR"):
        return Path(explicit).expanduser()
    if xdg := env.get("XDG_DATA_HOME"):
        return Path(xdg) / "dora"
    if is_root:
        return Path("/var/lib/dora")
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "dora"


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """Type of the filesystem holding `path`, from /proc/self/mounts (None if unknown)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target = str(path.resolve())
    best, best_type = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces in mount points as \040.
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def check_local_filesystem(path: Path, mounts: str | None = None) -> None:
    fs_type = filesystem_type(path, mounts)
    if fs_type in NETWORK_FILESYSTEMS:
        raise StoreError(
            f"DORA_DATA_DIR {path} is on {fs_type}: SQLite needs a local disk "
            "(its locks do not work on network file systems)"
        )


def _prepare_sqlite_file(settings: StoreSettings) -> Path:
    # 0700 directory and 0600 file: the database holds tokens and user data.
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_local_filesystem(settings.data_dir)
    path = settings.sqlite_path
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    return path


async def open_store(settings: StoreSettings) -> Store:
    """Open (and with ``init_db``, initialise) the store the settings name."""
    store: Store
    if settings.backend == "cql":
        store = await _open_cql(settings)
    else:
        path = _prepare_sqlite_file(settings)
        store = SqliteStore(
            path, synchronous=settings.synchronous, busy_timeout=settings.busy_timeout
        )
    if settings.init_db:
        await store.init()
    return store


async def _open_cql(settings: StoreSettings) -> Store:
    """The CQL backend is imported only when asked for: SQLite users never need a driver.

    Contract for `dora.store.cql`: ``async def open_store(settings) -> Store``.
    """
    try:
        module = importlib.import_module("dora.store.cql")
    except ModuleNotFoundError as exc:
        if exc.name == "dora.store.cql":
            raise StoreError(
                "CONTACT_POINTS is set but this Dora has no CQL backend yet (it lands with "
                "issue 3); unset CONTACT_POINTS to use the embedded SQLite store"
            ) from exc
        raise StoreError(f"the CQL backend needs {exc.name!r}: install scylla-driver") from exc
    store: Store = await module.open_store(settings)
    return store
