"""The Docker driver on the real engine, below the agent: NFS named volumes (created,
kept, re-created when their options change) and the node-scoped listing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from dora.node.docker import DockerDriver
from dora.node.spec import parse_assignment
from tests.docker_images import ensure_busybox_image
from tests.helpers import unique
from tests.integration.node_fixtures import (
    SESSION,
    TEST_LABEL,
    WORKSPACE,
    docker,
    foreign_container,
    inspect,
)


@pytest.fixture
async def driver() -> AsyncIterator[DockerDriver]:
    ensure_busybox_image()
    node = unique("drv")
    d = DockerDriver.connect(node=node, zone="dora-cluster-1", extra_labels={TEST_LABEL: SESSION})
    try:
        yield d
    finally:
        await d.close()


def nfs_assignment(volume: str, endpoint: str) -> dict[str, object]:
    return {
        "workspace": WORKSPACE,
        "name": "io.1",
        "uid": "u1",
        "spec": {"image": {"image": "busybox"}},
        "computed": {
            "volumes": [
                {
                    # the scheduler writes the Docker volume name; the plain name works too
                    "name": f"dora.volume.{WORKSPACE}.{volume}",
                    "workspace": WORKSPACE,
                    "target": "/home",
                    "read_only": False,
                    "storage_kind": "NFS",
                    "endpoint": endpoint,
                    "path": f"/dorastorage/{WORKSPACE}/{volume}",
                }
            ]
        },
    }


def volume(name: str) -> dict[str, object]:
    data: list[dict[str, object]] = json.loads(docker("volume", "inspect", name))
    return data[0]


async def test_nfs_volume_created_once_and_recreated_on_change(driver: DockerDriver) -> None:
    name = f"v{SESSION}"
    docker_name = f"dora.volume.{WORKSPACE}.{name}"
    (spec,) = parse_assignment(nfs_assignment(name, "127.0.0.31")).volumes
    assert spec.docker_volume == docker_name
    try:
        await driver.ensure_volume(spec)
        first = volume(docker_name)
        assert first["Driver"] == "local"
        assert first["Options"] == {
            "type": "nfs",
            "o": "addr=127.0.0.31,nfsvers=4",
            "device": f":/dorastorage/{WORKSPACE}/{name}",
        }
        labels = first["Labels"]
        assert isinstance(labels, dict) and labels[TEST_LABEL] == SESSION
        assert labels["dora.workspace"] == WORKSPACE

        await driver.ensure_volume(spec)  # same options: kept as it is
        assert volume(docker_name)["CreatedAt"] == first["CreatedAt"]

        (moved,) = parse_assignment(nfs_assignment(name, "127.0.0.32")).volumes
        await driver.ensure_volume(moved)  # the storage moved, nothing uses it: re-created
        assert volume(docker_name)["Options"]["o"] == "addr=127.0.0.32,nfsvers=4"  # type: ignore[index]
    finally:
        docker("volume", "rm", "-f", docker_name, check=False)


async def test_listing_is_scoped_to_this_node_and_zone(driver: DockerDriver) -> None:
    mine = foreign_container(
        f"dora.node={driver.node}",
        "dora.zone=dora-cluster-1",
        f"dora.workspace={WORKSPACE}",
        "dora.container=mine.1",
        "dora.uid=u-mine",
    )
    other_zone = foreign_container(
        f"dora.node={driver.node}", "dora.zone=elsewhere", "dora.container=x.1"
    )
    other_node = foreign_container("dora.node=someone-else", "dora.zone=dora-cluster-1")
    try:
        haves = await driver.haves()
        assert [(h.container_id, h.key, h.uid, h.status) for h in haves] == [
            (mine, (WORKSPACE, "mine.1"), "u-mine", "running")
        ]
        assert inspect(other_zone)["State"]["Running"] and inspect(other_node)["State"]["Running"]
    finally:
        docker("rm", "-f", mine, other_zone, other_node, check=False)
