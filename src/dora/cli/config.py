"""CLI profiles: which API server and token to use.

The file is ``~/.dora/config`` (or ``$DORA_CONFIG``), YAML, readable by its owner only
(0600, in a 0700 directory) because it holds tokens::

    current: admin
    profiles:
      admin: {server: https://dora.example.org, token: …, insecure: false, ca_cert: null}

``DORA_PROFILE`` picks a profile; ``DORA_API_SERVER`` and ``DORA_TOKEN`` override the
profile's server and token (and work with no file at all).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """The configuration is missing or wrong; the message says how to fix it."""


@dataclass
class Profile:
    server: str
    token: str | None = None
    insecure: bool = False
    ca_cert: str | None = None


@dataclass
class Config:
    current: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("DORA_CONFIG"):
        return Path(env["DORA_CONFIG"])
    return Path.home() / ".dora" / "config"


def load(path: Path) -> Config:
    if not path.exists():
        return Config()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping with 'current' and 'profiles'")
    profiles: dict[str, Profile] = {}
    entries = raw.get("profiles") or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: 'profiles' must be a mapping of name to profile")
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not entry.get("server"):
            raise ConfigError(f"{path}: profile {name!r} needs a server")
        profiles[str(name)] = Profile(
            server=str(entry["server"]),
            token=entry.get("token"),
            insecure=bool(entry.get("insecure", False)),
            ca_cert=entry.get("ca_cert"),
        )
    current = raw.get("current")
    return Config(current=str(current) if current else None, profiles=profiles)


def save(path: Path, config: Config) -> None:
    """Write atomically with owner-only permissions, whatever the umask."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "current": config.current,
        "profiles": {name: asdict(p) for name, p in config.profiles.items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(data, out, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def resolve(
    config: Config, profile_name: str | None, env: Mapping[str, str] | None = None
) -> Profile:
    """The profile to use, after `--profile`, DORA_PROFILE and the env overrides."""
    env = os.environ if env is None else env
    name = profile_name or env.get("DORA_PROFILE") or config.current
    base: Profile | None = None
    if name:
        base = config.profiles.get(name)
        if base is None and not env.get("DORA_API_SERVER"):
            known = ", ".join(sorted(config.profiles)) or "none yet"
            raise ConfigError(f"no profile named {name!r} (profiles: {known})")
    server = env.get("DORA_API_SERVER") or (base.server if base else None)
    if not server:
        raise ConfigError(
            "no API server configured: run `dora profile init NAME --api-server URL "
            "--token TOKEN`, or set DORA_API_SERVER and DORA_TOKEN"
        )
    return Profile(
        server=server,
        token=env.get("DORA_TOKEN") or (base.token if base else None),
        insecure=base.insecure if base else False,
        ca_cert=base.ca_cert if base else None,
    )
