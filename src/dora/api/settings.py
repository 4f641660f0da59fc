"""API server settings, read from the environment variables the admin guide uses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from dora.api.abuse import AbuseSettings
from dora.auth import check_secret
from dora.auth.container_tokens import DEFAULT_TTL_S, MAX_TTL_S

DEFAULT_PORT = 3000


class SettingsError(ValueError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


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
        )
