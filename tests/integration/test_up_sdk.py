"""`dora up` as a real process (API + scheduler + agent on SQLite, real Docker), driven
by the SDK's `Workload` builder: a container runs to completion and its output comes
back; another runs, execs and is deleted; a restart keeps the state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dora.client import Client, Workload
from tests.docker_images import BUSYBOX_IMAGE, ensure_busybox_image
from tests.helpers import free_port, unique, wait_until


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    node: str
    log: Path

    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_up(tmp: Path, node: str, port: int, node_port: int) -> Up:
    log = tmp / f"up-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DORA_")}
    env["DORA_CONFIG"] = str(tmp / "config")
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dora.cli.main", "up", "--data-dir", str(tmp / "data"),
             "--port", str(port), "--node-port", str(node_port), "--node-name", node],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    up = Up(process, f"http://127.0.0.1:{port}", tmp / "data", node, log)
    wait_until(lambda: "Press Ctrl-C" in up.output() or process.poll() is not None, within=90,
               what="dora up to start")  # fmt: skip
    assert process.poll() is None, up.output()
    return up


def stop_up(up: Up) -> None:
    if up.process.poll() is None:
        os.kill(up.process.pid, signal.SIGINT)
        try:
            up.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(up.process.pid, signal.SIGKILL)
            up.process.wait(timeout=10)


def remove_node_containers(node: str) -> None:
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dora.node={node}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    ensure_busybox_image()
    tmp = tmp_path_factory.mktemp("up")
    node = unique("upnode")
    running = start_up(tmp, node, free_port(), free_port())
    try:
        yield running
    finally:
        stop_up(running)
        remove_node_containers(node)


def busybox_job(client: Client, name: str, cmd: list[str]) -> Workload:
    return (
        Workload(client, name)
        .set_image(BUSYBOX_IMAGE, "Never")
        .set_cpu("250m")
        .set_cmd(cmd)
        .set_restart_policy("Never")
    )


def test_up_writes_profile_and_node_is_ready(up: Up) -> None:
    assert "Dora is up" in up.output()
    config = (up.data_dir.parent / "config").read_text()
    assert up.url in config
    assert oct((up.data_dir.parent / "config").stat().st_mode & 0o777) == "0o600"
    with Client(up.url, up.token()) as dora:
        wait_until(lambda: dora.get("Node", up.node).status == "READY", within=30,
                   what="the local node READY")  # fmt: skip


def test_sdk_workload_runs_to_completion_and_returns_output(up: Up) -> None:
    with Client(up.url, up.token()) as dora:
        job = busybox_job(dora, unique("done"), ["sh", "-c", "echo result=$((6*7))"])
        assert job.apply() == "created"
        job.wait_done(timeout=90)
        assert job.state() == "exited"
        assert "result=42" in list(job.logs())
        wait_until(lambda: dora.get("Workload", job.name, workspace="admin").status
                   == "Completed", within=30, what="phase Completed")  # fmt: skip
        job.delete()


def test_sdk_workload_exec_and_delete(up: Up) -> None:
    with Client(up.url, up.token()) as dora:
        job = busybox_job(dora, unique("live"), ["sleep", "3600"]).set_replica(1)
        job.apply()
        job.wait_ready(timeout=90)
        result = job.exec(1, ["sh", "-c", "echo hello-$((1+1)); exit 3"])
        assert (result.exit_code, result.output.strip()) == (3, "hello-2")
        job.delete()

        def gone() -> bool:
            names = subprocess.run(
                ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter",
                 f"label=dora.node={up.node}"],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            return f"dora.admin.{job.name}.1" not in names

        wait_until(gone, within=60, what="the container removed after delete")


def test_a_container_sees_a_file_uploaded_to_its_volume(up: Up, tmp_path: Path) -> None:
    """`dora upload` and the node agent agree on where a Local volume lives: the file
    the API wrote is the file the container reads."""
    storage, volume = tmp_path / "storage", unique("vol")
    src = tmp_path / "hello.txt"
    src.write_text("hello from a volume\n")
    with Client(up.url, up.token()) as dora:
        dora.apply(
            {
                "apiVersion": "v1",
                "kind": "Storage",
                "metadata": {"name": "scratch"},
                "spec": {"kind": "Local", "mountpath": str(storage)},
            }
        )
        dora.apply(
            {
                "apiVersion": "v1",
                "kind": "Volume",
                "metadata": {"name": volume},
                "spec": {"storage": "scratch"},
            }
        )
        assert dora.upload(src, volume, "in").files == 1
        assert [e.name for e in dora.ls(volume, "in")] == ["hello.txt"]
        job = busybox_job(dora, unique("reader"), ["cat", "/data/in/hello.txt"])
        job.add_volume(volume, "/data", read_only=True).apply()
        job.wait_done(timeout=90)
        assert job.state() == "exited"
        assert "hello from a volume" in list(job.logs())
        job.delete()
