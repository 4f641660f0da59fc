"""GPU inventory: NVML through ``nvidia-ml-py`` (module ``pynvml``), falling back to
``nvidia-smi -x -q``; an empty list on a node without NVIDIA GPUs.

Both paths produce the same dicts (the fields of `dora.api.schemas.GpuReport`):
``index`` (NVML index, the id Docker's ``DeviceIDs`` and ``computed.gpus`` use),
``minor_number`` (``/dev/nvidia<N>``), ``uuid``, ``product_name``,
``memory_total_mb``/``memory_used_mb`` (MiB), ``temperature_c``,
``temperature_max_c`` (the shutdown threshold, nvidia-smi's
``gpu_temp_max_threshold``), ``power_draw_w``, ``power_limit_w``,
``utilization_pct`` and ``processes`` (``[{pid, type, name, used_memory_mb}]``).

`parse_nvidia_smi_xml` accepts the old (``power_readings``, ``power_limit``,
``gpu_temp_max_threshold``) and the new (``gpu_power_readings``,
``current_power_limit``, ``average_power_draw`` / ``instant_power_draw``, T.Limit
temperatures) layouts; ``N/A`` becomes None.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from typing import Any

log = logging.getLogger("dora.node.gpu")

MIB = 1024 * 1024
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _number(text: str | None) -> float | None:
    """``"16384 MiB"`` → 16384.0, ``"43.21 W"`` → 43.21, ``"N/A"`` → None."""
    if text is None:
        return None
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


def _text(element: ET.Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in ("", "N/A", "[N/A]", "Unknown Error", "[Not Supported]") else value


def _first_number(element: ET.Element | None, *paths: str) -> float | None:
    for path in paths:
        value = _number(_text(element, path))
        if value is not None:
            return value
    return None


def _int(text: str | None) -> int | None:
    value = _number(text)
    return int(value) if value is not None else None


def _temperature_max(gpu: ET.Element) -> float | None:
    """The shutdown temperature: ``gpu_temp_max_threshold`` where printed; R550+
    drivers on Hopper print T.Limit values instead — ``gpu_temp_tlimit`` is the headroom
    (°C) left to the throttling limit and ``gpu_temp_max_tlimit_threshold`` the shutdown
    point relative to that limit (e.g. -5 C), so shutdown = temp + headroom − that."""
    absolute = _number(_text(gpu, "temperature/gpu_temp_max_threshold"))
    if absolute is not None:
        return absolute
    temp = _number(_text(gpu, "temperature/gpu_temp"))
    headroom = _number(_text(gpu, "temperature/gpu_temp_tlimit"))
    shutdown = _number(_text(gpu, "temperature/gpu_temp_max_tlimit_threshold"))
    if temp is None or headroom is None or shutdown is None:
        return None
    return temp + headroom - shutdown


def parse_nvidia_smi_xml(xml_text: str) -> list[dict[str, Any]]:
    """GPUs from the output of ``nvidia-smi -x -q`` (in the order printed = index)."""
    # nvidia-smi prints a DOCTYPE naming a local DTD; ElementTree does not fetch it.
    root = ET.fromstring(xml_text)  # noqa: S314 - trusted local tool output
    gpus: list[dict[str, Any]] = []
    for index, gpu in enumerate(root.findall("gpu")):
        power = gpu.find("gpu_power_readings")
        if power is None:
            power = gpu.find("power_readings")
        processes = []
        for proc in gpu.findall("processes/process_info"):
            processes.append(
                {
                    "pid": _int(_text(proc, "pid")),
                    "type": _text(proc, "type") or "",
                    "name": _text(proc, "process_name") or "",
                    "used_memory_mb": _number(_text(proc, "used_memory")),
                }
            )
        gpus.append(
            {
                "index": index,
                "minor_number": _int(_text(gpu, "minor_number")),
                "uuid": _text(gpu, "uuid") or "",
                "product_name": _text(gpu, "product_name") or "unknown",
                "memory_total_mb": _number(_text(gpu, "fb_memory_usage/total")),
                "memory_used_mb": _number(_text(gpu, "fb_memory_usage/used")),
                "temperature_c": _number(_text(gpu, "temperature/gpu_temp")),
                "temperature_max_c": _temperature_max(gpu),
                "power_draw_w": _first_number(
                    power, "power_draw", "average_power_draw", "instant_power_draw"
                ),
                "power_limit_w": _first_number(
                    power, "power_limit", "current_power_limit", "enforced_power_limit"
                ),
                "utilization_pct": _number(_text(gpu, "utilization/gpu_util")),
                "processes": processes,
            }
        )
    return gpus


def driver_version_from_xml(xml_text: str) -> str:
    root = ET.fromstring(xml_text)  # noqa: S314 - trusted local tool output
    return _text(root, "driver_version") or ""


# --------------------------------------------------------------------------- NVML


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvml(nvml: Any) -> list[dict[str, Any]]:
    """GPUs through an initialised NVML module (``pynvml``, or a stand-in with the same
    functions). Each reading that fails is None; a device that fails entirely is
    reported with its index and what could be read."""
    error = getattr(nvml, "NVMLError", Exception)

    def get(fn: str, *args: Any) -> Any:
        try:
            return getattr(nvml, fn)(*args)
        except error:
            return None

    gpus: list[dict[str, Any]] = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = get("nvmlDeviceGetMemoryInfo", handle)
        util = get("nvmlDeviceGetUtilizationRates", handle)
        power = get("nvmlDeviceGetPowerUsage", handle)
        limit = get("nvmlDeviceGetEnforcedPowerLimit", handle)
        temp = get("nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
        temp_max = get(
            "nvmlDeviceGetTemperatureThreshold", handle, nvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
        )
        processes = []
        for proc in get("nvmlDeviceGetComputeRunningProcesses", handle) or []:
            used = getattr(proc, "usedGpuMemory", None)
            processes.append(
                {
                    "pid": int(proc.pid),
                    "type": "C",
                    "name": "",
                    "used_memory_mb": round(used / MIB, 1) if isinstance(used, int) else None,
                }
            )
        name = get("nvmlDeviceGetName", handle)
        uuid = get("nvmlDeviceGetUUID", handle)
        minor = get("nvmlDeviceGetMinorNumber", handle)
        gpus.append(
            {
                "index": index,
                "minor_number": int(minor) if minor is not None else None,
                "uuid": _str(uuid) if uuid is not None else "",
                "product_name": _str(name) if name is not None else "unknown",
                "memory_total_mb": round(memory.total / MIB, 1) if memory is not None else None,
                "memory_used_mb": round(memory.used / MIB, 1) if memory is not None else None,
                "temperature_c": float(temp) if temp is not None else None,
                "temperature_max_c": float(temp_max) if temp_max is not None else None,
                "power_draw_w": round(power / 1000, 2) if power is not None else None,
                "power_limit_w": round(limit / 1000, 2) if limit is not None else None,
                "utilization_pct": float(util.gpu) if util is not None else None,
                "processes": processes,
            }
        )
    return gpus


class GpuProbe:
    """Reads the GPUs; NVML first, ``nvidia-smi`` next, nothing on a GPU-less node.

    ``nvml`` may be given (tests pass a recorded stand-in); otherwise ``pynvml`` is
    imported lazily. A node where neither works is asked again every ``retry_s``
    (a driver installed later is noticed).
    """

    def __init__(
        self,
        *,
        nvml: Any = None,
        nvidia_smi: str | None = None,
        retry_s: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        self._nvml = nvml
        self._nvml_ready = False
        self._nvidia_smi = nvidia_smi
        self._retry_s = retry_s
        self._clock = clock
        self._unavailable_until = 0.0
        self.source = ""
        """``nvml``, ``nvidia-smi`` or ``""`` (no GPU found) after a read."""
        self.driver_version = ""

    def _init_nvml(self) -> Any:
        if self._nvml_ready:
            return self._nvml
        nvml = self._nvml
        if nvml is None:
            try:
                nvml = importlib.import_module("pynvml")
            except ImportError:
                return None
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
            log.debug("event=nvml_unavailable error=%s", exc)
            return None
        self._nvml, self._nvml_ready = nvml, True
        try:
            self.driver_version = _str(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver_version = ""
        return nvml

    def read_nvml(self) -> list[dict[str, Any]] | None:
        nvml = self._init_nvml()
        if nvml is None:
            return None
        try:
            return read_nvml(nvml)
        except Exception as exc:
            log.warning("event=nvml_read_failed error=%s", exc)
            self._nvml_ready = False
            return None

    def smi_path(self) -> str | None:
        if self._nvidia_smi:
            return self._nvidia_smi
        return os.environ.get("NVIDIA_SMI_PATH") or shutil.which("nvidia-smi")

    async def read_smi(self) -> list[dict[str, Any]] | None:
        path = self.smi_path()
        if not path:
            return None
        try:
            proc = await asyncio.create_subprocess_exec(
                path,
                "-x",
                "-q",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(20):
                out, err = await proc.communicate()
        except (OSError, TimeoutError) as exc:
            log.warning("event=nvidia_smi_failed error=%s", exc)
            return None
        if proc.returncode != 0:
            log.warning("event=nvidia_smi_failed rc=%s stderr=%s", proc.returncode, err[:200])
            return None
        text = out.decode(errors="replace")
        try:
            gpus = parse_nvidia_smi_xml(text)
            self.driver_version = driver_version_from_xml(text)
        except ET.ParseError as exc:
            log.warning("event=nvidia_smi_unparsable error=%s", exc)
            return None
        return gpus

    async def read(self) -> list[dict[str, Any]]:
        if self._clock() < self._unavailable_until:
            return []
        gpus = await asyncio.to_thread(self.read_nvml)
        if gpus is not None:
            self.source = "nvml"
            return gpus
        gpus = await self.read_smi()
        if gpus is not None:
            self.source = "nvidia-smi"
            return gpus
        self.source = ""
        self._unavailable_until = self._clock() + self._retry_s
        return []
