"""Node inventory for the heartbeat: CPUs, memory, Docker, NVIDIA runtime, GPUs.

`Probe.inventory()` returns the `dora.api.schemas.NodeReport` fields except the
containers: ``version`` (the agent's), ``arch``, ``cpu_model``, ``cpu_count``
(logical), ``cpu_load`` (per logical CPU, % since the previous call), ``load_avg``
(1/5/15 min), ``memory_total``/``memory_available`` (bytes), ``docker_version``,
``nvidia_runtime`` (the engine lists an ``nvidia`` runtime in ``/info``) and ``gpus``
(`dora.node.gpu`). Docker facts are read once a minute; the rest at every report.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from dora import __version__
from dora.node.gpu import GpuProbe


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU model name from /proc/cpuinfo (x86 ``model name``; ARM ``Model`` or
    ``CPU part``), else what `platform` knows."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    for field in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == field and value.strip():
                return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown"


def nvidia_runtime(info: dict[str, Any]) -> bool:
    """Whether the engine knows the ``nvidia`` runtime (``docker info`` Runtimes)."""
    runtimes = info.get("Runtimes") or {}
    return "nvidia" in runtimes or info.get("DefaultRuntime") == "nvidia"


class Probe:
    def __init__(
        self,
        docker_facts: Callable[[], Awaitable[tuple[dict[str, Any], dict[str, Any]]]],
        *,
        gpus: GpuProbe | None = None,
        docker_every_s: float = 60.0,
    ) -> None:
        """``docker_facts`` returns (``/version``, ``/info``) of the engine."""
        self._docker_facts = docker_facts
        self.gpus = gpus or GpuProbe()
        self._docker_every_s = docker_every_s
        self._docker_at = -1e18
        self._docker: dict[str, Any] = {"docker_version": "", "nvidia_runtime": False}
        self._cpu_model = cpu_model()
        psutil.cpu_percent(percpu=True)  # prime: the next call measures since now

    async def docker(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._docker_at >= self._docker_every_s:
            try:
                version, info = await self._docker_facts()
            except Exception:  # the engine is away: report what we knew
                return dict(self._docker)
            self._docker = {
                "docker_version": str(version.get("Version") or info.get("ServerVersion") or ""),
                "nvidia_runtime": nvidia_runtime(info),
            }
            self._docker_at = now
        return dict(self._docker)

    async def inventory(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        try:
            load_avg = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load_avg = []
        facts: dict[str, Any] = {
            "version": __version__,
            "arch": platform.machine(),
            "cpu_model": self._cpu_model,
            "cpu_count": psutil.cpu_count(logical=True) or 0,
            "cpu_load": [round(x, 1) for x in psutil.cpu_percent(percpu=True)],
            "load_avg": load_avg,
            "memory_total": int(memory.total),
            "memory_available": int(memory.available),
            "gpus": await self.gpus.read(),
        }
        facts.update(await self.docker())
        return facts
