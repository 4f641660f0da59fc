"""Workload specs: defaults, normalisation, and the helpers the scheduler relies on."""

from __future__ import annotations

from typing import Any

import pytest

from dora.model import (
    DocumentError,
    Resource,
    WorkloadSpec,
    container_for,
    container_name,
    load_documents,
    parse_document,
    split_container_name,
)


def workload(spec: dict[str, Any], **metadata: Any) -> Resource:
    doc = {
        "apiVersion": "v1",
        "kind": "Workload",
        "metadata": {"name": "train", **metadata},
        "spec": {"image": {"image": "busybox"}, **spec},
    }
    return parse_document(doc)


def issues_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(DocumentError) as exc:
        workload(spec)
    return [f"{i.path}: {i.message}" for i in exc.value.issues]


def test_minimal_workload_gets_every_default_written_down() -> None:
    r = workload({})
    assert r.spec_dict() == {
        "replica": {"count": 1},
        "driver": "Docker",
        "priority": 0,
        "selectors": {},
        "image": {"image": "busybox", "pullPolicy": "IfNotPresent"},
        "config": {"env": {}, "affinity": "First", "restartPolicy": "Never"},
        "volumes": [],
        "network": {"mode": "none", "ports": []},
    }
    spec = r.spec_as(WorkloadSpec)
    # Neither CPU nor GPU requested: one whole CPU.
    assert spec.cpu_request_millicores() == 1000
    assert spec.exclusive_cpus() == 1
    assert spec.gpu_count() == 0
    assert spec.max_run_time_seconds() is None
    assert spec.argv() is None


def test_to_document_is_canonical_and_uses_workspace_for_group() -> None:
    r = workload({"replica": {"count": 3}}, group="team", zone="z1")
    doc = r.to_document()
    assert doc["apiVersion"] == "v1"
    assert doc["metadata"] == {"name": "train", "zone": "z1", "workspace": "team"}
    assert "meta" not in doc
    assert parse_document(doc) == r


@pytest.mark.parametrize(
    ("cpu", "millicores", "exclusive"),
    [
        ({"count": 2}, 2000, 2),
        ({"count": "500m"}, 500, 0),
        ({"count": "1500m"}, 1500, 0),
        ({}, 1000, 1),
    ],
)
def test_cpu_requests(cpu: dict[str, Any], millicores: int, exclusive: int) -> None:
    spec = workload({"selectors": {"cpu": cpu}}).spec_as(WorkloadSpec)
    assert spec.cpu_request_millicores() == millicores
    assert spec.exclusive_cpus() == exclusive
    assert spec.selectors.cpu is not None
    assert spec.selectors.cpu.is_millicores == isinstance(cpu.get("count"), str)


def test_gpu_workload_cpus_follow_gpus_unless_asked() -> None:
    spec = workload({"selectors": {"gpu": {"count": 2, "product_name": ["A100", "H100"]}}}).spec_as(
        WorkloadSpec
    )
    assert spec.is_gpu_workload()
    assert spec.gpu_count() == 2
    assert spec.cpu_request_millicores() == 0
    assert spec.gpu_product_names() == ("A100", "H100")
    with_cpu = workload({"selectors": {"gpu": {}, "cpu": {"count": 4}}}).spec_as(WorkloadSpec)
    assert with_cpu.gpu_count() == 1
    assert with_cpu.gpu_product_names() is None
    assert with_cpu.cpu_request_millicores() == 4000


def test_gpu_count_zero_is_a_cpu_workload() -> None:
    spec = workload({"selectors": {"gpu": {"count": 0}}}).spec_as(WorkloadSpec)
    assert not spec.is_gpu_workload()
    assert spec.cpu_request_millicores() == 1000


def test_node_selector_all_means_no_pin() -> None:
    assert (
        workload({"selectors": {"node": {"name": "All"}}}).spec_as(WorkloadSpec).node_name() is None
    )
    assert (
        workload({"selectors": {"node": {"name": "node1"}}}).spec_as(WorkloadSpec).node_name()
        == "node1"
    )


@pytest.mark.parametrize(
    ("written", "stored", "seconds"),
    [
        ("30s", "30s", 30),
        ("90m", "90m", 5400),
        ("12H", "12h", 43200),
        ("2d", "2d", 172800),
        (3600, "3600s", 3600),
    ],
)
def test_max_run_time_is_normalised_and_exposed_in_seconds(
    written: Any, stored: str, seconds: int
) -> None:
    spec = workload({"config": {"maxRunTime": written}}).spec_as(WorkloadSpec)
    assert spec.config.maxRunTime == stored
    assert spec.max_run_time_seconds() == seconds


@pytest.mark.parametrize(
    ("written", "size"),
    [
        (1024, 1024),
        ("1g", 1024**3),
        ("512m", 512 * 1024**2),
        ("64Mi", 64 * 1024**2),
        ("2GB", 2 * 1024**3),
        ("100", 100),
    ],
)
def test_shm_size_is_normalised_to_bytes(written: Any, size: int) -> None:
    spec = workload({"config": {"shmSize": written}}).spec_as(WorkloadSpec)
    assert spec.shm_size_bytes() == size
    assert spec.to_dict()["config"]["shmSize"] == size


def test_env_list_and_mapping_forms_are_the_same() -> None:
    as_list = workload({"config": {"env": ["A=1", "B=x=y", "EMPTY="]}})
    as_map = workload({"config": {"env": {"A": 1, "B": "x=y", "EMPTY": ""}}})
    assert as_list == as_map
    assert as_list.spec_as(WorkloadSpec).env_list() == ["A=1", "B=x=y", "EMPTY="]


def test_env_rejects_duplicates_and_nulls() -> None:
    assert issues_of({"config": {"env": ["A=1", "A=2"]}}) == ["spec.config.env[1]: sets A twice"]
    assert issues_of({"config": {"env": {"A": None}}}) == [
        'spec.config.env.A: needs a value; write "" for an empty one'
    ]


def test_cmd_string_is_split_and_list_items_keep_numbers_as_text() -> None:
    assert workload({"config": {"cmd": "sleep  3600"}}).spec_as(WorkloadSpec).argv() == [
        "sleep",
        "3600",
    ]
    [r] = load_documents(
        "apiVersion: v1\nkind: Workload\nmetadata: {name: a}\n"
        "spec:\n  image: {image: busybox}\n  config:\n    cmd: [sleep, 3600, 1.10]\n"
    )
    assert r.spec_as(WorkloadSpec).argv() == ["sleep", "3600", "1.10"]


def test_volume_mount_defaults_and_group_synonym() -> None:
    spec = workload(
        {"volumes": [{"name": "home"}, {"name": "data", "group": "shared", "target": "/mnt/data"}]}
    ).spec_as(WorkloadSpec)
    assert spec.volumes[0].target == "/home"
    assert spec.volumes[0].workspace is None
    assert spec.volumes[0].readOnly is None
    assert spec.volumes[1].workspace == "shared"
    assert spec.to_dict()["volumes"][1] == {
        "name": "data",
        "target": "/mnt/data",
        "workspace": "shared",
    }


def test_network_ports_defaults() -> None:
    spec = workload(
        {"network": {"mode": "bridge", "ports": [{"port": 8080, "nodePort": 30080}]}}
    ).spec_as(WorkloadSpec)
    assert spec.to_dict()["network"]["ports"] == [
        {"kind": "NodePort", "protocol": "tcp", "port": 8080, "nodePort": 30080}
    ]


def test_enum_values_are_matched_ignoring_case_and_stored_canonically() -> None:
    spec = workload(
        {
            "image": {"image": "busybox", "pullPolicy": "always"},
            "config": {"affinity": "distribute"},
        }
    ).spec_as(WorkloadSpec)
    assert spec.image.pullPolicy == "Always"
    assert spec.config.affinity == "Distribute"


def test_several_problems_are_reported_together() -> None:
    problems = issues_of({"replica": {"count": -1}, "priority": "high", "binds": ["/:/host"]})
    assert len(problems) == 3
    assert any(p.startswith("spec.binds: 'binds' is not allowed") for p in problems)


def test_container_names_and_container_for() -> None:
    assert container_name("blue.red", 1) == "blue.red.1"
    assert split_container_name("blue.red.12") == ("blue.red", 12)
    for bad in ("train", "train.0", "train.01", ".1"):
        with pytest.raises(ValueError):
            split_container_name(bad)
    with pytest.raises(ValueError):
        container_name("train", 0)
    wk = workload({"replica": {"count": 2}}, zone="z1", workspace="team")
    c = container_for(wk, 2)
    assert (c.kind, c.name, c.zone, c.workspace) == ("Container", "train.2", "z1", "team")
    assert c.spec == wk.spec
    assert parse_document(c.to_document()) == c
