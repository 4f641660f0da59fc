"""GPU inventory from recorded data: ``nvidia-smi -x -q`` XML of an 8× V100 node
(driver 470, old layout) and a 1× H200 node (driver 550, new layout), and NVML
readings of the same kinds of boxes fed through a stand-in for ``pynvml`` — the only
fake in the node tests, because this machine has no GPU."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pynvml
import pytest

from dora.api.schemas import GpuReport
from dora.node.gpu import (
    GpuProbe,
    driver_version_from_xml,
    parse_nvidia_smi_xml,
    read_nvml,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "gpu"
V100_XML = DATA / "nvidia-smi-8xV100-470.xml"
H200_XML = DATA / "nvidia-smi-1xH200-550.xml"


class RecordedNvml:
    """Exposes the pynvml functions `dora.node.gpu` calls, answering from a recording
    (``null`` values raise NVML's NOT_SUPPORTED error, as a real device would)."""

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN

    def __init__(self, recording: dict[str, Any], *, init_error: int | None = None) -> None:
        self.recording = recording
        self.devices = recording["devices"]
        self.init_error = init_error
        self.initialised = 0

    @staticmethod
    def _value(value: Any) -> Any:
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self.recording["driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return dict(self.devices[index])

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:
        return str(handle["name"])

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:
        return str(handle["uuid"])

    def nvmlDeviceGetMinorNumber(self, handle: dict[str, Any]) -> int:
        return int(handle["minor_number"])

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:
        memory = self._value(handle["memory"])
        return type("c_nvmlMemory_t", (), dict(memory))()

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:
        rates = self._value(handle["utilization"])
        return type("c_nvmlUtilization_t", (), dict(rates))()

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return int(self._value(handle["temperature"]))

    def nvmlDeviceGetTemperatureThreshold(self, handle: dict[str, Any], kind: int) -> int:
        assert kind == pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
        return int(self._value(handle["temperature_shutdown"]))

    def nvmlDeviceGetPowerUsage(self, handle: dict[str, Any]) -> int:
        return int(self._value(handle["power_usage_mw"]))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: dict[str, Any]) -> int:
        return int(self._value(handle["enforced_power_limit_mw"]))

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict[str, Any]) -> list[Any]:
        procs = self._value(handle["processes"])
        return [type("c_nvmlProcessInfo_t", (), dict(p))() for p in procs]


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


# ---------------------------------------------------------------------- nvidia-smi XML


def test_v100_node_old_layout() -> None:
    text = V100_XML.read_text()
    gpus = parse_nvidia_smi_xml(text)
    assert driver_version_from_xml(text) == "470.161.03"
    assert [g["index"] for g in gpus] == list(range(8))
    assert [g["minor_number"] for g in gpus] == list(range(8))
    assert {g["product_name"] for g in gpus} == {"Tesla V100-SXM2-16GB"}
    assert len({g["uuid"] for g in gpus}) == 8
    assert all(g["uuid"].startswith("GPU-") for g in gpus)
    first = gpus[0]
    assert first["memory_total_mb"] == 16160.0
    assert first["memory_used_mb"] == 15321.0
    assert first["temperature_c"] == 61.0
    assert first["temperature_max_c"] == 90.0
    assert first["power_draw_w"] == 247.18
    assert first["power_limit_w"] == 300.0
    assert first["utilization_pct"] == 97.0
    assert first["processes"] == [
        {"pid": 48213, "type": "C", "name": "python", "used_memory_mb": 15318.0}
    ]
    idle = gpus[2]
    assert (idle["utilization_pct"], idle["memory_used_mb"], idle["processes"]) == (0.0, 0.0, [])
    assert len(gpus[4]["processes"]) == 2
    assert gpus[4]["processes"][0]["name"] == "/opt/conda/bin/python3"
    for gpu in gpus:
        GpuReport.model_validate(gpu)  # the API accepts every field


def test_h200_node_new_layout() -> None:
    text = H200_XML.read_text()
    (gpu,) = parse_nvidia_smi_xml(text)
    assert driver_version_from_xml(text) == "550.90.07"
    assert gpu["product_name"] == "NVIDIA H200"
    assert gpu["uuid"] == "GPU-8c1b7e42-5d0a-4f3e-9b27-6a1f0d2c4e98"
    assert (gpu["index"], gpu["minor_number"]) == (0, 0)
    assert gpu["memory_total_mb"] == 143771.0
    assert gpu["memory_used_mb"] == 81254.0
    assert gpu["temperature_c"] == 52.0
    assert gpu["temperature_max_c"] == 92.0  # 52 C + 35 C headroom + 5 C (T.Limit -5 C)
    assert gpu["power_draw_w"] == 512.36  # average_power_draw (gpu_power_readings)
    assert gpu["power_limit_w"] == 700.0  # current_power_limit
    assert gpu["utilization_pct"] == 88.0
    assert [p["pid"] for p in gpu["processes"]] == [2210934, 2211077]
    assert gpu["processes"][1] == {
        "pid": 2211077,
        "type": "C+G",
        "name": "nvtop",
        "used_memory_mb": 612.0,
    }
    GpuReport.model_validate(gpu)


def test_not_available_values_become_none() -> None:
    xml = """<?xml version="1.0" ?>
<nvidia_smi_log><driver_version>535.54.03</driver_version>
<gpu id="00000000:01:00.0"><product_name>NVIDIA A100-SXM4-80GB</product_name>
<uuid>GPU-x</uuid><minor_number>N/A</minor_number>
<fb_memory_usage><total>81920 MiB</total><used>N/A</used></fb_memory_usage>
<temperature><gpu_temp>N/A</gpu_temp></temperature>
<gpu_power_readings><power_draw>[N/A]</power_draw>
<current_power_limit>400.00 W</current_power_limit></gpu_power_readings>
<utilization><gpu_util>N/A</gpu_util></utilization><processes></processes></gpu>
</nvidia_smi_log>"""
    (gpu,) = parse_nvidia_smi_xml(xml)
    assert gpu["minor_number"] is None
    assert gpu["memory_used_mb"] is None and gpu["memory_total_mb"] == 81920.0
    assert gpu["temperature_c"] is None and gpu["temperature_max_c"] is None
    assert gpu["power_draw_w"] is None and gpu["power_limit_w"] == 400.0
    assert gpu["utilization_pct"] is None


def test_no_gpus_in_the_log() -> None:
    xml = (
        "<nvidia_smi_log><driver_version>550.1</driver_version>"
        "<attached_gpus>0</attached_gpus></nvidia_smi_log>"
    )
    assert parse_nvidia_smi_xml(xml) == []


# ---------------------------------------------------------------------- NVML


def test_nvml_h200_matches_what_nvidia_smi_says() -> None:
    (gpu,) = read_nvml(RecordedNvml(recording("nvml-1xH200.json")))
    (smi,) = parse_nvidia_smi_xml(H200_XML.read_text())
    for field in (
        "index",
        "minor_number",
        "uuid",
        "product_name",
        "memory_total_mb",
        "memory_used_mb",
        "temperature_c",
        "temperature_max_c",
        "power_draw_w",
        "power_limit_w",
        "utilization_pct",
    ):
        assert gpu[field] == smi[field], field
    assert gpu["processes"] == [
        {"pid": 2210934, "type": "C", "name": "", "used_memory_mb": 80640.0},
        {"pid": 2211077, "type": "C", "name": "", "used_memory_mb": 612.0},
    ]
    GpuReport.model_validate(gpu)


def test_nvml_readings_that_fail_are_none() -> None:
    first, second = read_nvml(RecordedNvml(recording("nvml-2xV100-partial.json")))
    assert first["power_draw_w"] == 247.18 and first["power_limit_w"] == 300.0
    assert first["memory_total_mb"] == 16160.0
    assert first["processes"][1] == {"pid": 48990, "type": "C", "name": "", "used_memory_mb": None}
    assert second["index"] == 1 and second["minor_number"] == 1
    assert second["power_draw_w"] is None and second["power_limit_w"] is None
    assert second["processes"] == []
    assert second["temperature_c"] == 34.0


async def test_probe_prefers_nvml() -> None:
    fake = RecordedNvml(recording("nvml-1xH200.json"))
    probe = GpuProbe(nvml=fake, nvidia_smi="/nonexistent/nvidia-smi")
    gpus = await probe.read()
    assert probe.source == "nvml" and probe.driver_version == "550.90.07"
    assert gpus[0]["product_name"] == "NVIDIA H200"
    await probe.read()
    assert fake.initialised == 1  # initialised once, read many times


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path) -> Path:
    """An executable that prints the recorded V100 log, as nvidia-smi -x -q would."""
    script = tmp_path / "nvidia-smi"
    script.write_text(f'#!/bin/sh\n[ "$1 $2" = "-x -q" ] || exit 9\ncat "{V100_XML}"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def test_probe_falls_back_to_nvidia_smi(fake_nvidia_smi: Path) -> None:
    fake = RecordedNvml(
        recording("nvml-1xH200.json"), init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    )
    probe = GpuProbe(nvml=fake, nvidia_smi=str(fake_nvidia_smi))
    gpus = await probe.read()
    assert probe.source == "nvidia-smi"
    assert probe.driver_version == "470.161.03"
    assert len(gpus) == 8


async def test_gpu_less_node_reports_no_gpus() -> None:
    """This machine: the real pynvml finds no driver, and there is no nvidia-smi."""
    clock = [0.0]
    probe = GpuProbe(nvidia_smi="", clock=lambda: clock[0], retry_s=60)
    assert await probe.read() == []
    assert probe.source == ""
    clock[0] = 30.0
    assert await probe.read() == []  # not asked again before retry_s


async def test_failing_nvidia_smi_is_no_gpu(tmp_path: Path) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    script.chmod(0o755)
    fake = RecordedNvml(
        recording("nvml-1xH200.json"), init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    )
    probe = GpuProbe(nvml=fake, nvidia_smi=str(script))
    assert await probe.read() == []
