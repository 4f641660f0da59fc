"""API server settings, read from the environment variables the admin guide uses.

========================  ==========================================================
variable                  meaning
========================  ==========================================================
``ZONE``                  the zone this API serves (required)
``secret``                signs tokens; the same long random value on every replica
``INIT_DB``               ``true`` on the first start: schema, admin token (printed)
``HOST`` / ``PORT``       where to listen (``0.0.0.0:3000``)
``HOST_IP``               this host's address, as the nodes reach it
``DORA_TLS_CERT``/``KEY`` PEM files for HTTPS
``DORA_TRUSTED_PROXIES``  peers whose X-Forwarded-For is believed (``127.0.0.1,::1``)
``DORA_NODE_READY_S``     a node silent this long is NOT_READY (20)
``DORA_CONTAINER_TOKEN_TTL_S`` life of a container token (shell ``?token=``; 30)
``DORA_AUTH_*``,          failed-login ban and per-token rate limit (`abuse_from_env`)
``DORA_RATE_*``
``DORA_STORAGE_MOUNTS``   ``name=/path,…``: where an NFS Storage's export
                          (``endpoint:mountpath``) is already mounted on this host,
                          for volume file operations (`dora ls/upload/download/sync`).
                          A storage not listed is mounted by the API itself, once,
                          under ``$DORA_DATA_DIR/storage-mounts/<name>`` (needs root
                          and ``nfs-common``). Local storages need nothing: their
                          directory is read on this host.
``DORA_DATA_DIR``         the embedded database's folder; also the mount folder above
``DORA_UPLOAD_MAX_FILE_MB``  the largest file one upload may write (1048576 = 1 TiB)
``DORA_UPLOAD_MAX_CHUNK_MB`` the largest body of one upload request (256)
``DORA_API_LIST_CACHE``   ``off`` stops answering repeated listings from memory
                          (on by default; see `dora.api.list_cache`)
========================  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dora.api.abuse import AbuseSettings
from dora.auth import check_secret
from dora.auth.container_tokens import DEFAULT_TTL_S, MAX_TTL_S
from dora.store.config import data_dir_from_env

DEFAULT_PORT = 3000
MIB = 1024 * 1024
DEFAULT_UPLOAD_MAX_FILE = 1024 * 1024 * MIB
DEFAULT_UPLOAD_MAX_CHUNK = 256 * MIB


class SettingsError(ValueError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be on or off (got {env.get(name)!r})")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number (got {raw!r})") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive (got {raw!r})")
    return value


def _container_token_ttl(env: Mapping[str, str]) -> float:
    """``DORA_CONTAINER_TOKEN_TTL_S``: seconds a container token may be redeemed in."""
    ttl = _number(env, "DORA_CONTAINER_TOKEN_TTL_S", DEFAULT_TTL_S)
    if not 0 < ttl <= MAX_TTL_S:
        raise SettingsError(
            f"DORA_CONTAINER_TOKEN_TTL_S must be more than 0 and at most {MAX_TTL_S:g} "
            f"(got {ttl:g})"
        )
    return ttl


def storage_mounts_from_env(text: str | None) -> dict[str, str]:
    """``DORA_STORAGE_MOUNTS``: ``storageName=/where/it/is/mounted,…``."""
    mounts: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path.startswith("/"):
            raise SettingsError(
                f"DORA_STORAGE_MOUNTS: {item.strip()!r} must be storageName=/absolute/path "
                "(e.g. dora.storage.01=/mnt/dorastorage)"
            )
        if name in mounts:
            raise SettingsError(f"DORA_STORAGE_MOUNTS names storage {name!r} twice")
        mounts[name] = path.rstrip("/") or "/"
    return mounts


def abuse_from_env(env: Mapping[str, str]) -> AbuseSettings:
    """`DORA_AUTH_MAX_FAILURES` (alias `MAX_ATTEMPTS`), `DORA_AUTH_WINDOW_S`,
    `DORA_AUTH_BAN_S` (alias `RELEASE_TIME_MS`, in ms), `DORA_RATE_PER_S`, `DORA_RATE_BURST`."""
    base = AbuseSettings()
    ban_s = _number(env, "DORA_AUTH_BAN_S", base.ban_s)
    if "DORA_AUTH_BAN_S" not in env and env.get("RELEASE_TIME_MS"):
        ban_s = _number(env, "RELEASE_TIME_MS", base.ban_s * 1000) / 1000
    max_failures = _number(
        env, "DORA_AUTH_MAX_FAILURES", _number(env, "MAX_ATTEMPTS", base.max_failures)
    )
    return AbuseSettings(
        max_failures=int(max_failures),
        window_s=_number(env, "DORA_AUTH_WINDOW_S", base.window_s),
        ban_s=ban_s,
        rate_per_s=_number(env, "DORA_RATE_PER_S", base.rate_per_s),
        burst=int(_number(env, "DORA_RATE_BURST", base.burst)),
    )


@dataclass(frozen=True)
class ApiSettings:
    zone: str
    secret: str = field(repr=False)
    init_db: bool = False
    host: str = "0.0.0.0"  # noqa: S104 - a cluster API listens on the network by design
    port: int = DEFAULT_PORT
    host_ip: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    """Peers whose X-Forwarded-For / X-Real-IP headers are believed (e.g. nginx)."""
    container_token_ttl_s: float = DEFAULT_TTL_S
    """Life of a container token (`POST /v1/containers/{name}/token`)."""
    abuse: AbuseSettings = field(default_factory=AbuseSettings)
    long_poll_max_s: float = 30.0
    node_ready_s: float = 20.0
    """A node whose last report is older than this is NOT_READY."""
    storage_mounts: Mapping[str, str] = field(default_factory=dict)
    """NFS storage name → where its export is mounted on this host."""
    data_dir: Path | None = None
    """The API's own folder: NFS exports it mounts go under ``storage-mounts/``
    (None: it mounts none), and no volume may expose it."""
    upload_max_file: int = DEFAULT_UPLOAD_MAX_FILE
    upload_max_chunk: int = DEFAULT_UPLOAD_MAX_CHUNK
    list_cache: bool = True
    """Answer a repeated listing from memory while the database is unchanged."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if env is None else env
        zone = env.get("ZONE", "").strip()
        if not zone:
            raise SettingsError(
                "ZONE is not set: name the zone this API serves, e.g. ZONE=dora-cluster-1"
            )
        secret = env.get("secret") or env.get("DORA_SECRET") or ""
        if not secret:
            raise SettingsError(
                "secret is not set: give every API replica the same long random value, "
                "e.g. secret=$(openssl rand -hex 32)"
            )
        try:
            check_secret(secret)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        port_raw = env.get("PORT", str(DEFAULT_PORT))
        if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
            raise SettingsError(f"PORT must be a TCP port number (got {port_raw!r})")
        cert, key = env.get("DORA_TLS_CERT") or None, env.get("DORA_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise SettingsError("DORA_TLS_CERT and DORA_TLS_KEY must be given together")
        proxies = env.get("DORA_TRUSTED_PROXIES")
        return cls(
            zone=zone,
            secret=secret,
            init_db=_truthy(env.get("INIT_DB")),
            host=env.get("HOST", "0.0.0.0"),  # noqa: S104
            port=int(port_raw),
            host_ip=env.get("HOST_IP") or None,
            tls_cert=cert,
            tls_key=key,
            trusted_proxies=(
                frozenset(p.strip() for p in proxies.split(",") if p.strip())
                if proxies is not None
                else cls.trusted_proxies
            ),
            container_token_ttl_s=_container_token_ttl(env),
            abuse=abuse_from_env(env),
            node_ready_s=_number(env, "DORA_NODE_READY_S", 20.0),
            storage_mounts=storage_mounts_from_env(env.get("DORA_STORAGE_MOUNTS")),
            data_dir=data_dir_from_env(env, is_root=os.geteuid() == 0),
            upload_max_file=int(
                _number(env, "DORA_UPLOAD_MAX_FILE_MB", DEFAULT_UPLOAD_MAX_FILE / MIB) * MIB
            ),
            upload_max_chunk=int(
                _number(env, "DORA_UPLOAD_MAX_CHUNK_MB", DEFAULT_UPLOAD_MAX_CHUNK / MIB) * MIB
            ),
            list_cache=_switch(env, "DORA_API_LIST_CACHE", default=True),
        )
