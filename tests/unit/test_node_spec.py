"""The assignment contract (`dora.node.spec`) and the Docker create body built from it
(`dora.node.docker.container_config`): pure functions, no engine."""

from __future__ import annotations

from typing import Any

import pytest

from dora.node.docker import (
    container_config,
    gpu_mode_warning,
    have_from_inspect,
    is_no_nvidia_error,
    nfs_volume_options,
    parse_docker_time,
)
from dora.node.spec import (
    GIB,
    MIB,
    SpecError,
    check_bind_path,
    default_shm_size,
    parse_assignment,
    parse_size,
    run_hash,
)

SPEC: dict[str, Any] = {
    "replica": {"count": 2},
    "driver": "Docker",
    "priority": 0,
    "selectors": {"cpu": {"product_name": "All", "count": "500m"}},
    "image": {"image": "busybox:1.36", "pullPolicy": "IfNotPresent"},
    "config": {
        "cmd": ["sh", "-c", "echo hi"],
        "env": {"K": "V"},
        "affinity": "Distribute",
        "restartPolicy": "Never",
        "maxRunTime": "2h",
    },
    "volumes": [{"name": "home", "target": "/home"}],
    "network": {"mode": "none", "ports": []},
}


def assignment(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "workspace": "ws",
        "name": "job.2",
        "uid": "u1",
        "version": 7,
        "desired": "run",
        "spec": SPEC,
        "computed": {"node": "node1", "gpus": [], "cpus": [], "millicores": 500, "replica": 2},
    }
    base.update(over)
    return base


def with_spec(**parts: Any) -> dict[str, Any]:
    spec = dict(SPEC)
    spec.update(parts)
    return assignment(spec=spec)


def with_computed(**parts: Any) -> dict[str, Any]:
    computed = dict(assignment()["computed"])
    computed.update(parts)
    return assignment(computed=computed)


def config_of(a: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return container_config(parse_assignment(a), zone="z1", node="node1", **kw)


# ---------------------------------------------------------------------- parsing


def test_parse_the_documented_example() -> None:
    run = parse_assignment(assignment())
    assert run.docker_name == "dora.ws.job.2"
    assert (run.workload, run.replica, run.version, run.uid) == ("job", 2, 7, "u1")
    assert run.argv == ("sh", "-c", "echo hi")
    assert run.env == ("K=V",)
    assert run.pull_policy == "IfNotPresent" and run.restart_policy == "Never"
    assert run.millicores == 500 and run.cpus == () and run.gpus == ()
    assert run.network_mode == "none" and run.ports == ()


def test_missing_keys_take_defaults() -> None:
    run = parse_assignment(
        {"workspace": "ws", "name": "x.1", "uid": "u", "spec": {"image": {"image": "img"}}}
    )
    assert run.desired == "run" and run.pull_policy == "IfNotPresent"
    assert run.restart_policy == "Never" and run.argv is None and run.env == ()
    assert run.memory is None and run.shm_size is None and run.volumes == ()
    assert run.replica == 1 and run.version == 0


def test_cmd_string_is_split_like_a_shell() -> None:
    run = parse_assignment(with_spec(config={"cmd": "sh -c 'echo \"a b\"; exit 3'"}))
    assert run.argv == ("sh", "-c", 'echo "a b"; exit 3')
    with pytest.raises(SpecError, match="shell line"):
        parse_assignment(with_spec(config={"cmd": "sh -c 'unterminated"}))


def test_env_as_list_or_mapping() -> None:
    assert parse_assignment(with_spec(config={"env": ["A=1", "B=x=y"]})).env == ("A=1", "B=x=y")
    assert parse_assignment(with_spec(config={"env": {"A": 1, "B": ""}})).env == ("A=1", "B=")
    with pytest.raises(SpecError, match="NAME=value"):
        parse_assignment(with_spec(config={"env": ["NOEQUALS"]}))


def test_replica_from_name_when_not_computed() -> None:
    computed = {"node": "n"}
    assert parse_assignment(assignment(name="web.12", computed=computed)).replica == 12
    assert parse_assignment(assignment(name="web", computed=computed)).replica == 1


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"spec": {"image": {}}}, "image reference"),
        ({"spec": {"image": {"image": "a b"}}}, "image reference"),
        ({"name": "bad/name"}, "not a valid container name"),
        ({"desired": "explode"}, "unknown desired state"),
        ({"computed": {"gpus": "0"}}, "list of integers"),
        ({"computed": {"cpus": [-1]}}, "integers >= 0"),
        ({"computed": {"memory": "1g"}}, "integer >= 0"),
    ],
)
def test_unrunnable_assignments_say_why(over: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_assignment(assignment(**over))


def test_bad_policies_and_network() -> None:
    with pytest.raises(SpecError, match="pullPolicy"):
        parse_assignment(with_spec(image={"image": "i", "pullPolicy": "Sometimes"}))
    with pytest.raises(SpecError, match="restartPolicy"):
        parse_assignment(with_spec(config={"restartPolicy": "Maybe"}))
    with pytest.raises(SpecError, match="not allowed"):
        parse_assignment(with_spec(network={"mode": "host"}))


def test_run_hash_ignores_the_replica_count() -> None:
    scaled = dict(SPEC, replica={"count": 9})
    computed = assignment()["computed"]
    assert run_hash(SPEC, computed) == run_hash(scaled, computed)
    assert run_hash(SPEC, computed) != run_hash(SPEC, dict(computed, memory=1))
    changed = dict(SPEC, image={"image": "other"})
    assert run_hash(SPEC, computed) != run_hash(changed, computed)


def test_sizes() -> None:
    assert parse_size("1g") == GIB and parse_size("512m") == 512 * MIB
    assert parse_size(4096) == 4096 and parse_size("2GiB") == 2 * GIB
    assert parse_size("lots") is None and parse_size(0) is None and parse_size(True) is None


def test_default_shm_size() -> None:
    assert default_shm_size(None) == 2 * GIB
    assert default_shm_size(16 * GIB) == 8 * GIB
    assert default_shm_size(32 * MIB) == 64 * MIB  # never below 64 MiB


def test_shm_size_order_of_precedence() -> None:
    spec_shm = with_spec(config={"shmSize": "256m"})
    assert parse_assignment(spec_shm).effective_shm_size() == 256 * MIB
    both = dict(spec_shm, computed={"shm_size": 128 * MIB})
    assert parse_assignment(both).effective_shm_size() == 128 * MIB
    limited = with_computed(memory=4 * GIB)
    assert parse_assignment(limited).effective_shm_size() == 2 * GIB


# ---------------------------------------------------------------------- host paths


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc",
        "/etc/ssl",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/srv/x/docker.sock",
        "/proc/1",
        "/sys",
        "/dev/sda",
        "/var/lib/docker/volumes",
        "relative/path",
        "/data/../etc",
        "/data:/etc",
        "/usr",
        "/root",
    ],
)
def test_dangerous_bind_paths_are_refused(path: str) -> None:
    with pytest.raises(SpecError):
        check_bind_path(path)


def test_plain_storage_paths_are_accepted() -> None:
    assert check_bind_path("/dorastorage/ws/home") == "/dorastorage/ws/home"
    assert check_bind_path("/mnt/nas//ws/") == "/mnt/nas/ws"


# ---------------------------------------------------------------------- docker config


def test_config_labels_env_security() -> None:
    config = config_of(assignment(), extra_labels={"team": "ml"})
    assert config["Image"] == "busybox:1.36"
    assert config["Cmd"] == ["sh", "-c", "echo hi"]
    assert config["Tty"] is False and config["OpenStdin"] is False
    assert config["Labels"] == {
        "team": "ml",
        "dora.zone": "z1",
        "dora.workspace": "ws",
        "dora.workload": "job",
        "dora.container": "job.2",
        "dora.replica": "2",
        "dora.node": "node1",
        "dora.uid": "u1",
        "dora.version": "7",
        "dora.run-hash": parse_assignment(assignment()).run_hash,
        "dora.managed-by": "dora-node",
    }
    assert config["Env"][0] == "K=V"
    assert "DORA_CONTAINER=job.2" in config["Env"]
    assert config["Env"][-1] == "NVIDIA_VISIBLE_DEVICES=void"
    host = config["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert host["RestartPolicy"] == {"Name": "no"}
    assert "AutoRemove" not in host and "Binds" not in host and "CapAdd" not in host
    assert host["NetworkMode"] == "none"
    assert host["NanoCpus"] == 500_000_000 and "CpusetCpus" not in host
    assert "Memory" not in host
    assert host["ShmSize"] == 2 * GIB
    assert "Cmd" not in config_of(with_spec(config={}))


def test_user_env_cannot_unhide_gpus() -> None:
    config = config_of(with_spec(config={"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}))
    assert config["Env"][-1] == "NVIDIA_VISIBLE_DEVICES=void"  # the last one wins


def test_gpus_cpuset_memory() -> None:
    config = config_of(with_computed(gpus=[2, 3], cpus=[8, 9, 10, 11], memory=64 * GIB))
    host = config["HostConfig"]
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["2", "3"], "Capabilities": [["gpu"]]}
    ]
    assert host["CpusetCpus"] == "8,9,10,11"
    assert "NanoCpus" not in host
    assert host["Memory"] == 64 * GIB
    assert host["ShmSize"] == 32 * GIB
    assert config["Env"][-1] == "NVIDIA_VISIBLE_DEVICES=2,3"


def test_runtime_env_mode_hands_gpus_over_as_the_variable_only() -> None:
    """For an engine whose default runtime is nvidia (nvidia-docker2): no
    DeviceRequests (an engine without --gpus support refuses them), only the ids."""
    a = with_computed(gpus=[2, 3], cpus=[8, 9, 10, 11], memory=64 * GIB)
    config = config_of(a, gpu_mode="runtime-env")
    host = config["HostConfig"]
    assert "DeviceRequests" not in host
    assert config["Env"][-1] == "NVIDIA_VISIBLE_DEVICES=2,3"
    assert [e for e in config["Env"] if e.startswith("NVIDIA_")] == ["NVIDIA_VISIBLE_DEVICES=2,3"]
    assert host["CpusetCpus"] == "8,9,10,11" and host["Memory"] == 64 * GIB
    # Apart from the device request, the two modes build the same body.
    default = config_of(a)
    del default["HostConfig"]["DeviceRequests"]
    assert config == default


@pytest.mark.parametrize("mode", ["device-request", "runtime-env"])
def test_containers_without_gpus_see_none_in_either_mode(mode: str) -> None:
    config = config_of(with_spec(config={"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}), gpu_mode=mode)
    assert config["Env"][-1] == "NVIDIA_VISIBLE_DEVICES=void"
    assert "DeviceRequests" not in config["HostConfig"]


def test_gpu_mode_warning_only_for_runtime_env_without_a_default_nvidia_runtime() -> None:
    runc = {"DefaultRuntime": "runc", "Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}}
    nvidia_known = {"DefaultRuntime": "runc", "Runtimes": {"runc": {}, "nvidia": {}}}
    nvidia_default = {"DefaultRuntime": "nvidia", "Runtimes": {"runc": {}, "nvidia": {}}}
    assert gpu_mode_warning("device-request", runc) is None
    assert gpu_mode_warning("runtime-env", nvidia_default) is None
    warning = gpu_mode_warning("runtime-env", runc)
    assert warning is not None
    assert warning.startswith(
        "DORA_GPU_MODE=runtime-env but the engine's default runtime is 'runc' "
        "(it has no nvidia runtime; runtimes: io.containerd.runc.v2, runc)"
    )
    assert '"default-runtime": "nvidia"' in warning and "DORA_GPU_MODE=device-request" in warning
    known = gpu_mode_warning("runtime-env", nvidia_known)
    assert known is not None and "(it knows an nvidia runtime; " in known


def test_node_ports_follow_the_replica_index() -> None:
    network = {
        "mode": "bridge",
        "ports": [
            {"kind": "NodePort", "protocol": "tcp", "port": 80, "nodePort": 30080},
            {"kind": "NodePort", "protocol": "udp", "port": 53, "nodePort": 30053},
            {"kind": "NodePort", "port": 9000},
        ],
    }
    spec = dict(SPEC, network=network)
    for replica, expected in ((1, "30080"), (2, "30081"), (5, "30084")):
        a = assignment(name=f"web.{replica}", spec=spec, computed={"replica": replica})
        config = config_of(a, port_bind_ip="10.0.0.5")
        host = config["HostConfig"]
        assert host["NetworkMode"] == "bridge"
        assert host["PortBindings"]["80/tcp"] == [{"HostIp": "10.0.0.5", "HostPort": expected}]
        assert host["PortBindings"]["53/udp"][0]["HostPort"] == str(30053 + replica - 1)
        assert host["PortBindings"]["9000/tcp"] == [{"HostIp": "10.0.0.5", "HostPort": ""}]
        assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp", "9000/tcp"}


def test_ports_are_ignored_without_bridge() -> None:
    spec = dict(SPEC, network={"mode": "none", "ports": [{"port": 80, "nodePort": 30080}]})
    config = config_of(assignment(spec=spec))
    assert "PortBindings" not in config["HostConfig"] and "ExposedPorts" not in config


def test_volumes_nfs_and_local() -> None:
    volumes = [
        {
            "name": "home",
            "workspace": "ws",
            "target": "/home",
            "read_only": False,
            "storage_kind": "NFS",
            "endpoint": "10.0.0.31",
            "path": "/dorastorage/ws/home",
        },
        {
            "name": "datasets",
            "workspace": "shared",
            "target": "/data",
            "read_only": True,
            "storage_kind": "NFS",
            "endpoint": "nas.local",
            "path": "/exports/datasets",
        },
        {
            "name": "scratch",
            "workspace": "ws",
            "target": "/scratch",
            "read_only": True,
            "storage_kind": "Local",
            "path": "/local/ws/scratch",
        },
    ]
    run = parse_assignment(with_computed(volumes=volumes))
    config = container_config(run, zone="z", node="n")
    assert config["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Source": "dora.volume.ws.home", "Target": "/home", "ReadOnly": False},
        {
            "Type": "volume",
            "Source": "dora.volume.shared.datasets",
            "Target": "/data",
            "ReadOnly": True,
        },
    ]
    assert config["HostConfig"]["Binds"] == ["/local/ws/scratch:/scratch:ro"]
    assert nfs_volume_options(run.volumes[0]) == {
        "type": "nfs",
        "o": "addr=10.0.0.31,nfsvers=4",
        "device": ":/dorastorage/ws/home",
    }
    assert nfs_volume_options(run.volumes[1], "nfsvers=4.1,soft")["o"] == (
        "addr=nas.local,nfsvers=4.1,soft"
    )


@pytest.mark.parametrize(
    "volume",
    [
        {"name": "v", "target": "/", "storage_kind": "Local", "path": "/srv/v"},
        {"name": "v", "target": "/x", "storage_kind": "NFS", "path": "/p"},  # no endpoint
        {"name": "v", "target": "/x", "storage_kind": "Ceph", "path": "/p"},
        {"name": "v", "target": "/x", "storage_kind": "Local", "path": "/var/run/docker.sock"},
        {"name": "", "target": "/x", "storage_kind": "Local", "path": "/srv/v"},
    ],
)
def test_bad_volumes_are_refused(volume: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_assignment(with_computed(volumes=[volume]))


# ---------------------------------------------------------------------- docker state


def test_docker_times() -> None:
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("") is None and parse_docker_time(None) is None
    assert parse_docker_time("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456)
    assert parse_docker_time("2024-01-02T03:04:05Z") == 1704164645.0
    assert parse_docker_time("garbage") is None


def test_have_from_inspect() -> None:
    data = {
        "Id": "abc",
        "Config": {
            "Labels": {
                "dora.workspace": "ws",
                "dora.container": "job.1",
                "dora.uid": "u1",
                "dora.run-hash": "h",
            }
        },
        "State": {
            "Status": "exited",
            "ExitCode": 137,
            "OOMKilled": True,
            "StartedAt": "2024-01-02T03:04:05Z",
            "FinishedAt": "2024-01-02T03:04:15Z",
            "Error": "",
        },
    }
    have = have_from_inspect(data)
    assert have is not None
    assert (have.key, have.uid, have.run_hash, have.status) == (
        ("ws", "job.1"),
        "u1",
        "h",
        "exited",
    )
    assert (have.exit_code, have.oom_killed) == (137, True)
    assert have.finished_at is not None and have.started_at is not None
    assert have.finished_at - have.started_at == 10.0
    created = dict(data, State={"Status": "created", "ExitCode": 0})
    assert have_from_inspect(created).exit_code is None  # type: ignore[union-attr]
    assert have_from_inspect({"Id": "x", "Config": {"Labels": {}}}) is None
    # A process that exits at once can be stamped as finished before it started.
    early = {"StartedAt": "2024-01-02T03:04:05.0030Z", "FinishedAt": "2024-01-02T03:04:05.001Z"}
    quick = have_from_inspect(dict(data, State={**data["State"], **early}))  # type: ignore[dict-item]
    assert quick is not None and quick.finished_at == quick.started_at


def test_nvidia_errors_are_recognised() -> None:
    assert is_no_nvidia_error('could not select device driver "nvidia" with capabilities: [[gpu]]')
    assert is_no_nvidia_error("unknown or invalid runtime name: nvidia")
    assert not is_no_nvidia_error("port is already allocated")
