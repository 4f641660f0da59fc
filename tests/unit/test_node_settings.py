"""Node agent settings, identity, inventory helpers and the API client's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.node.agent import agent_id
from dora.node.client import ApiClient, ApiError, Backoff, ssl_verify
from dora.node.probe import Probe, cpu_model, nvidia_runtime
from dora.node.settings import NodeSettings, NodeSettingsError, parse_labels

BASE = {"API_ENDPOINT": "http://127.0.0.1:3000", "NODE_NAME": "node1", "API_TOKEN": "tok-123"}


def test_minimal_environment_and_defaults() -> None:
    s = NodeSettings.from_env(BASE)
    assert (s.api_endpoint, s.node_name, s.zone, s.port) == (
        "http://127.0.0.1:3000",
        "node1",
        None,
        3001,
    )
    assert s.report_interval_s == 5.0 and s.stop_grace_s == 10
    assert s.restart.crash_loop_limit == 5 and s.restart.fast_failure_s == 10.0
    assert s.insecure_api is False and s.api_ca is None and s.docker_host is None
    assert "tok-123" not in repr(s)
    assert s.gpu_mode == "device-request"


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ("device-request", "device-request"),
        ("runtime-env", "runtime-env"),
        (" Runtime-Env ", "runtime-env"),
        ("", "device-request"),
    ],
)
def test_gpu_mode(raw: str, mode: str) -> None:
    assert NodeSettings.from_env(dict(BASE, DORA_GPU_MODE=raw)).gpu_mode == mode


def test_every_setting() -> None:
    env = dict(
        BASE,
        API_ENDPOINT="https://api.example:3000/",
        ZONE="z2",
        PORT="4001",
        DORA_REPORT_INTERVAL_S="2.5",
        DORA_INSECURE_API="true",
        DOCKER_SOCKET="/run/user/docker.sock",
        DORA_EXTRA_LABELS="team=ml, cost=42",
        DORA_PORT_BIND_IP="10.0.0.5",
        DORA_STOP_GRACE_S="0",
        DORA_RESTART_BACKOFF_S="0.5",
        DORA_CRASH_LOOP_LIMIT="3",
        DORA_NFS_OPTIONS="nfsvers=4.1,soft",
    )
    s = NodeSettings.from_env(env)
    assert s.api_endpoint == "https://api.example:3000"
    assert (s.zone, s.port, s.report_interval_s, s.insecure_api) == ("z2", 4001, 2.5, True)
    assert s.docker_host == "unix:///run/user/docker.sock"
    assert s.extra_labels == {"team": "ml", "cost": "42"}
    assert (s.port_bind_ip, s.stop_grace_s) == ("10.0.0.5", 0)
    assert (s.restart.backoff_s, s.restart.crash_loop_limit) == (0.5, 3)
    assert s.nfs_options == "nfsvers=4.1,soft"
    assert NodeSettings.from_env(dict(env, DOCKER_HOST="tcp://127.0.0.1:2375")).docker_host == (
        "tcp://127.0.0.1:2375"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "API_ENDPOINT, NODE_NAME, API_TOKEN are not set"),
        ({"API_ENDPOINT": "x", "NODE_NAME": "n"}, "API_TOKEN is not set"),
        (dict(BASE, API_ENDPOINT="ftp://x"), "http\\(s\\) URL"),
        (dict(BASE, NODE_NAME="a b"), "not a valid node name"),
        (dict(BASE, PORT="70000"), "PORT must be a TCP port"),
        (dict(BASE, DORA_REPORT_INTERVAL_S="0"), "more than 0"),
        (dict(BASE, DORA_REPORT_INTERVAL_S="soon"), "must be a number"),
        (dict(BASE, DORA_CRASH_LOOP_LIMIT="0"), "at least 1"),
        (dict(BASE, DORA_API_CA="/nonexistent/ca.pem"), "not a readable file"),
        (dict(BASE, DORA_EXTRA_LABELS="dora.node=other"), "dora.\\* labels belong"),
        (dict(BASE, DORA_EXTRA_LABELS="novalue"), "not key=value"),
        (
            dict(BASE, DORA_GPU_MODE="nvidia"),
            "DORA_GPU_MODE must be device-request or runtime-env \\(got 'nvidia'\\)",
        ),
    ],
)
def test_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(NodeSettingsError, match=message) as info:
        NodeSettings.from_env(env)
    assert "tok-123" not in str(info.value)


def test_ca_file_from_the_original_variables(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = dict(BASE, USE_CUSTOM_CA_SSL_CERT="true", SSL_CA_CRT=str(ca))
    assert NodeSettings.from_env(env).api_ca == str(ca)
    assert ssl_verify(insecure=True, ca_file=None) is False
    assert ssl_verify(insecure=False, ca_file=None) is True


def test_labels() -> None:
    assert parse_labels("") == {}
    assert parse_labels("a=1,,b = two ") == {"a": "1", "b": "two"}


def test_agent_id_is_stable_and_distinct() -> None:
    a = agent_id("node1", "ENGINE", "machine")
    assert a == agent_id("node1", "ENGINE", "machine") and len(a) == 32
    assert a != agent_id("node2", "ENGINE", "machine")
    assert a != agent_id("node1", "OTHER", "machine")
    assert a != agent_id("node1", "ENGINE", "other")
    assert agent_id("node1", "ENGINE") == agent_id("node1", "ENGINE")  # reads /etc/machine-id


def test_backoff_is_jittered_and_bounded() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= 4.0 for d in delays) and delays[-1] >= 2.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_cpu_model_from_cpuinfo() -> None:
    x86 = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  Gold 6230 CPU\n"
    )
    assert cpu_model(x86) == "Intel(R) Xeon(R) Gold 6230 CPU"
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nModel\t\t: Raspberry Pi 4\n"
    assert cpu_model(arm) == "Raspberry Pi 4"
    assert cpu_model("") != ""


def test_nvidia_runtime_from_docker_info() -> None:
    assert nvidia_runtime(
        {"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}}
    )
    assert nvidia_runtime({"Runtimes": {"runc": {}}, "DefaultRuntime": "nvidia"})
    assert not nvidia_runtime({"Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}})


async def test_inventory_of_this_machine() -> None:
    async def facts() -> tuple[dict[str, object], dict[str, object]]:
        return {"Version": "20.10.24"}, {"Runtimes": {"runc": {}}}

    probe = Probe(facts)
    inventory = await probe.inventory()
    assert inventory["cpu_count"] >= 1
    assert len(inventory["cpu_load"]) == inventory["cpu_count"]
    assert inventory["memory_total"] >= inventory["memory_available"] > 0
    assert len(inventory["load_avg"]) == 3
    assert inventory["docker_version"] == "20.10.24"
    assert inventory["nvidia_runtime"] is False
    assert inventory["gpus"] == []  # no GPU on this machine


async def test_unreachable_api_is_an_api_error() -> None:
    client = ApiClient("http://127.0.0.1:9", "t", node="n1", agent_id="a")
    try:
        with pytest.raises(ApiError, match="cannot reach the API"):
            await client.version()
    finally:
        await client.close()
