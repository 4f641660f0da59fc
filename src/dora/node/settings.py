"""Node agent settings, read from the environment the admin guide uses.

=============================  ===============================================================
variable                       meaning
=============================  ===============================================================
``API_ENDPOINT``               the API's base URL, e.g. ``https://yourdoraapi.com`` (required)
``NODE_NAME``                  this node's name; a Node with that name must exist (required)
``API_TOKEN``                  a token of the node user (``Node: report``) (required; never
                               logged)
``ZONE``                       the node's zone (default: the zone the API serves)
``PORT``                       port of the exec/logs server (default 3001)
``DORA_REPORT_INTERVAL_S``     heartbeat period (default 5 s; the API calls a node silent
                               for 20 s NOT_READY)
``DORA_INSECURE_API``          ``true``: accept any API certificate (a self-signed one);
                               prefer ``DORA_API_CA``
``DORA_API_CA``                PEM file of the CA that signed the API's certificate (also
                               read from ``SSL_CA_CRT`` when ``USE_CUSTOM_CA_SSL_CERT=true``)
``DOCKER_HOST``                the engine (``unix:///var/run/docker.sock``, ``tcp://…``);
                               ``DOCKER_SOCKET`` (a socket path) is accepted too
``DORA_EXTRA_LABELS``          ``k=v,k2=v2`` labels added to every container and volume
``DORA_PORT_BIND_IP``          host address NodePorts are published on (default: all)
``DORA_STOP_GRACE_S``          SIGTERM → SIGKILL grace when draining (default 10)
``DORA_RESTART_BACKOFF_S``     first restart delay after a fast failure (default 1)
``DORA_RESTART_BACKOFF_MAX_S`` longest restart delay (default 300)
``DORA_FAST_FAILURE_S``        a run shorter than this is a fast failure (default 10)
``DORA_CRASH_LOOP_LIMIT``      consecutive fast failures before ``failed`` (default 5)
``DORA_API_BACKOFF_MAX_S``     longest wait between retries when the API fails (default 15)
``DORA_PULL_TIMEOUT_S``        longest image pull (default 1800)
``DORA_NFS_OPTIONS``           NFS mount options after ``addr=`` (default ``nfsvers=4``)
``DORA_CONTAINER_INIT``        ``false``: no Docker init as PID 1 (for an engine without
                               ``docker-init``); default true
``DORA_LONG_POLL_S``           how long one assignments request waits (default 25 s)
``DORA_NODE_TLS_CERT``         PEM certificate (chain) of the exec/logs server on ``PORT``;
                               with ``DORA_NODE_TLS_KEY``. Default: a self-signed one made
                               at each start (the API pins the fingerprint the agent reports)
``DORA_EXEC_BIND``             address the exec/logs server listens on (default: all)
``DORA_GPU_MODE``              how a container gets its GPUs: ``device-request`` (default:
                               Docker ``DeviceRequests`` for the bound GPU ids, as
                               ``docker run --gpus``; needs nvidia-container-toolkit) or
                               ``runtime-env`` (only ``NVIDIA_VISIBLE_DEVICES=<ids>``, read
                               by the ``nvidia`` runtime; for engines whose default runtime
                               is ``nvidia``, the classic nvidia-docker2 setup)
=============================  ===============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import urlsplit

from dora.node.reconcile import RestartRules

DEFAULT_PORT = 3001

GpuMode = Literal["device-request", "runtime-env"]
"""How GPUs are handed to containers (``DORA_GPU_MODE``; see `dora.node.docker`)."""
GPU_MODES: tuple[GpuMode, ...] = get_args(GpuMode)


class NodeSettingsError(ValueError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0, zero: bool = False
) -> float:
    """A number setting: more than 0 (or at least 0 with ``zero``), at least ``minimum``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise NodeSettingsError(f"{name} must be a number (got {raw!r})") from None
    if value < minimum or (value == 0 and not zero) or value < 0:
        floor = f"at least {minimum:g}" if minimum else ("0 or more" if zero else "more than 0")
        raise NodeSettingsError(f"{name} must be {floor} (got {raw!r})")
    return value


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` → labels; ``dora.*`` keys are the agent's own and refused."""
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NodeSettingsError(f"DORA_EXTRA_LABELS: {item!r} is not key=value")
        if key.startswith("dora."):
            raise NodeSettingsError(
                f"DORA_EXTRA_LABELS may not set {key}: dora.* labels belong to the agent"
            )
        labels[key] = value.strip()
    return labels


def parse_gpu_mode(raw: str | None) -> GpuMode:
    """``DORA_GPU_MODE`` → a `GpuMode`; unset or empty → ``device-request``."""
    text = (raw or "").strip().lower()
    if not text:
        return "device-request"
    if text not in GPU_MODES:
        raise NodeSettingsError(
            f"DORA_GPU_MODE must be {' or '.join(GPU_MODES)} (got {raw!r}): device-request "
            "hands GPUs over as Docker DeviceRequests (nvidia-container-toolkit, like "
            "`docker run --gpus`), runtime-env only sets NVIDIA_VISIBLE_DEVICES (engines "
            "whose default runtime is nvidia)"
        )
    return text


@dataclass(frozen=True)
class NodeSettings:
    api_endpoint: str
    node_name: str
    api_token: str = field(repr=False)
    zone: str | None = None
    port: int = DEFAULT_PORT
    report_interval_s: float = 5.0
    long_poll_s: float = 25.0
    insecure_api: bool = False
    api_ca: str | None = None
    docker_host: str | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)
    port_bind_ip: str = ""
    stop_grace_s: int = 10
    restart: RestartRules = field(default_factory=RestartRules)
    api_backoff_max_s: float = 15.0
    pull_timeout_s: float = 1800.0
    nfs_options: str = "nfsvers=4"
    container_init: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    exec_bind: str = ""
    gpu_mode: GpuMode = "device-request"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NodeSettings:
        env = os.environ if env is None else env
        missing = [n for n in ("API_ENDPOINT", "NODE_NAME", "API_TOKEN") if not env.get(n)]
        if missing:
            raise NodeSettingsError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: the agent "
                "needs API_ENDPOINT (the API's URL, e.g. https://yourdoraapi.com), NODE_NAME "
                "(the Node's name) and API_TOKEN (from `dora token create node node 1`)"
            )
        endpoint = env["API_ENDPOINT"].strip().rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NodeSettingsError(
                f"API_ENDPOINT must be an http(s) URL like https://yourdoraapi.com "
                f"(got {endpoint!r})"
            )
        node = env["NODE_NAME"].strip()
        if not node or any(c.isspace() or c in "/=," for c in node):
            raise NodeSettingsError(f"NODE_NAME {node!r} is not a valid node name")
        port_raw = env.get("PORT", str(DEFAULT_PORT)).strip()
        if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
            raise NodeSettingsError(f"PORT must be a TCP port number (got {port_raw!r})")
        ca = env.get("DORA_API_CA") or None
        if ca is None and _truthy(env.get("USE_CUSTOM_CA_SSL_CERT")):
            ca = env.get("SSL_CA_CRT") or None
        if ca is not None and not os.path.isfile(ca):
            raise NodeSettingsError(f"DORA_API_CA {ca!r} is not a readable file")
        docker_host = env.get("DOCKER_HOST") or None
        if docker_host is None and env.get("DOCKER_SOCKET"):
            docker_host = "unix://" + env["DOCKER_SOCKET"]
        tls_cert = (env.get("DORA_NODE_TLS_CERT") or "").strip() or None
        tls_key = (env.get("DORA_NODE_TLS_KEY") or "").strip() or None
        if bool(tls_cert) != bool(tls_key):
            raise NodeSettingsError("DORA_NODE_TLS_CERT and DORA_NODE_TLS_KEY go together")
        for name, path in (("DORA_NODE_TLS_CERT", tls_cert), ("DORA_NODE_TLS_KEY", tls_key)):
            if path is not None and not os.path.isfile(path):
                raise NodeSettingsError(f"{name} {path!r} is not a readable file")
        limit = _number(env, "DORA_CRASH_LOOP_LIMIT", 5, minimum=1)
        rules = RestartRules(
            backoff_s=_number(env, "DORA_RESTART_BACKOFF_S", 1.0),
            backoff_max_s=_number(env, "DORA_RESTART_BACKOFF_MAX_S", 300.0),
            fast_failure_s=_number(env, "DORA_FAST_FAILURE_S", 10.0),
            crash_loop_limit=int(limit),
        )
        return cls(
            api_endpoint=endpoint,
            node_name=node,
            api_token=env["API_TOKEN"].strip(),
            zone=(env.get("ZONE") or "").strip() or None,
            port=int(port_raw),
            report_interval_s=_number(env, "DORA_REPORT_INTERVAL_S", 5.0),
            long_poll_s=_number(env, "DORA_LONG_POLL_S", 25.0),
            insecure_api=_truthy(env.get("DORA_INSECURE_API")),
            api_ca=ca,
            docker_host=docker_host,
            extra_labels=parse_labels(env.get("DORA_EXTRA_LABELS", "")),
            port_bind_ip=env.get("DORA_PORT_BIND_IP", "").strip(),
            stop_grace_s=int(_number(env, "DORA_STOP_GRACE_S", 10, zero=True)),
            restart=rules,
            api_backoff_max_s=_number(env, "DORA_API_BACKOFF_MAX_S", 15.0),
            pull_timeout_s=_number(env, "DORA_PULL_TIMEOUT_S", 1800.0),
            nfs_options=env.get("DORA_NFS_OPTIONS", "nfsvers=4").strip(),
            container_init=(env.get("DORA_CONTAINER_INIT") or "true").strip().lower()
            not in ("0", "false", "no", "off"),
            tls_cert=tls_cert,
            tls_key=tls_key,
            exec_bind=(env.get("DORA_EXEC_BIND") or "").strip(),
            gpu_mode=parse_gpu_mode(env.get("DORA_GPU_MODE")),
        )
