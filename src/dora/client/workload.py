"""A workload from Python, in the spirit of the original ``dorasl`` driver (without its
bugs: setters that work, no CLI subprocess, typed errors, a selector always set).

    from dora.client import Client, Workload

    with Client(server, token) as dora:
        job = (
            Workload(dora, "train")
            .set_image("pytorch/pytorch:latest")
            .set_gpu("Tesla V100-SXM2-16GB", 1)
            .set_cmd(["python", "train.py"])
            .add_volume("home", "/home")
        )
        job.apply()
        job.wait_ready(timeout=120)
        print(job.exec(1, ["nvidia-smi"]).output)
        job.drain_on_exit()        # delete it when this program ends

Every setter returns the workload, so calls chain. `apply()` sends the document the
setters built (`document()` shows it); nothing is sent before.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, Self

from dora.client.client import Client
from dora.client.errors import DoraError, NotFound
from dora.client.exec import ExecResult

RUNNING = "running"
FINISHED = ("exited", "failed", "deleted")


class WorkloadTimeout(DoraError):
    """`wait_*` gave up; the message says what was last seen."""


class Workload:
    def __init__(
        self,
        client: Client,
        name: str,
        *,
        workspace: str | None = None,
        zone: str | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.workspace = workspace
        self.zone = zone
        self._spec: dict[str, Any] = {"image": {"image": "busybox"}, "config": {}}
        self._exit_hooked = False

    # ------------------------------------------------------------------ setters

    def set_name(self, name: str) -> Self:
        self.name = name
        return self

    def set_workspace(self, workspace: str) -> Self:
        self.workspace = workspace
        return self

    def set_zone(self, zone: str) -> Self:
        self.zone = zone
        return self

    def set_image(self, image: str, pull_policy: str | None = None) -> Self:
        self._spec["image"] = {"image": image}
        if pull_policy:
            self._spec["image"]["pullPolicy"] = pull_policy
        return self

    def set_pull_policy(self, policy: str) -> Self:
        self._spec["image"]["pullPolicy"] = policy
        return self

    def set_replica(self, count: int) -> Self:
        self._spec["replica"] = {"count": count}
        return self

    def set_cmd(self, cmd: str | list[str]) -> Self:
        self._spec["config"]["cmd"] = cmd
        return self

    def set_env(self, **env: str) -> Self:
        self._spec["config"]["env"] = dict(env)
        return self

    def set_gpu(self, model: str | list[str], count: int) -> Self:
        """GPUs per replica: a model name, a list of models, or ``All``."""
        self._spec.setdefault("selectors", {})["gpu"] = {"product_name": model, "count": count}
        return self

    def set_cpu(self, count: int | str, model: str | list[str] = "All") -> Self:
        """CPUs per replica: whole CPUs (``4``) or millicores (``"500m"``)."""
        self._spec.setdefault("selectors", {})["cpu"] = {"product_name": model, "count": count}
        return self

    def set_node(self, node: str) -> Self:
        self._spec.setdefault("selectors", {})["node"] = {"name": node}
        return self

    def set_affinity(self, affinity: str) -> Self:
        self._spec["config"]["affinity"] = affinity
        return self

    def set_restart_policy(self, policy: str) -> Self:
        self._spec["config"]["restartPolicy"] = policy
        return self

    def set_shm_size(self, size: int | str) -> Self:
        self._spec["config"]["shmSize"] = size
        return self

    def set_max_run_time(self, duration: str) -> Self:
        self._spec["config"]["maxRunTime"] = duration
        return self

    def add_volume(
        self,
        name: str,
        target: str | None = None,
        *,
        workspace: str | None = None,
        read_only: bool | None = None,
    ) -> Self:
        entry: dict[str, Any] = {"name": name}
        if target:
            entry["target"] = target
        if workspace:
            entry["workspace"] = workspace
        if read_only is not None:
            entry["readOnly"] = read_only
        self._spec.setdefault("volumes", []).append(entry)
        return self

    def del_volumes(self) -> Self:
        self._spec.pop("volumes", None)
        return self

    def add_port(self, port: int, node_port: int | None = None, protocol: str = "tcp") -> Self:
        network = self._spec.setdefault("network", {"mode": "bridge", "ports": []})
        network["mode"] = "bridge"
        entry: dict[str, Any] = {"kind": "NodePort", "protocol": protocol, "port": port}
        if node_port is not None:
            entry["nodePort"] = node_port
        network.setdefault("ports", []).append(entry)
        return self

    # ------------------------------------------------------------------ actions

    def document(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name}
        if self.zone:
            metadata["zone"] = self.zone
        if self.workspace:
            metadata["workspace"] = self.workspace
        return {"apiVersion": "v1", "kind": "Workload", "metadata": metadata, "spec": self._spec}

    def apply(self) -> str:
        """Create or update it; returns created / updated / scaled / unchanged."""
        result = self.client.apply(self.document())
        self.zone, self.workspace = result.zone or self.zone, result.workspace or self.workspace
        return result.status

    def delete(self) -> None:
        """Drain and remove it (its containers stop)."""
        with contextlib.suppress(NotFound):
            self.client.delete("Workload", self.name, zone=self.zone, workspace=self.workspace)

    def container(self, index: int) -> str:
        return f"{self.name}.{index}"

    def state(self, index: int = 1) -> str:
        """The container's state (``pending`` until the scheduler placed it)."""
        try:
            record = self.client.get(
                "Container", self.container(index), zone=self.zone, workspace=self.workspace
            )
        except NotFound:
            return "pending"
        return record.status or "pending"

    def wait_ready(self, index: int | None = None, timeout: float = 120) -> None:
        """Wait until the replica (every replica by default) runs."""
        self._wait(index, timeout, lambda s: s == RUNNING, "running")

    def wait_done(self, index: int | None = None, timeout: float = 120) -> None:
        """Wait until the replica (every replica by default) has stopped."""
        self._wait(index, timeout, lambda s: s in FINISHED, "finished")

    def _wait(self, index: int | None, timeout: float, ok: Any, goal: str) -> None:
        replicas = int((self._spec.get("replica") or {}).get("count", 1))
        indices = [index] if index is not None else list(range(1, replicas + 1))
        deadline = time.monotonic() + timeout
        states: dict[int, str] = {}
        while True:
            states = {i: self.state(i) for i in indices}
            if all(ok(s) for s in states.values()):
                return
            if goal == "running" and any(s == "failed" for s in states.values()):
                raise WorkloadTimeout(f"workload {self.name} failed: {states}")
            if time.monotonic() >= deadline:
                raise WorkloadTimeout(
                    f"workload {self.name} not {goal} after {timeout:.0f} s: {states}"
                )
            time.sleep(0.25)

    def exec(self, index: int, argv: list[str], *, timeout: float | None = None) -> ExecResult:
        """Run `argv` in replica `index`; exit code and output."""
        return self.client.exec(
            self.container(index), argv, zone=self.zone, workspace=self.workspace, timeout=timeout
        )

    def logs(
        self, index: int = 1, *, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        return self.client.logs(
            self.container(index),
            zone=self.zone,
            workspace=self.workspace,
            follow=follow,
            tail=tail,
        )

    def drain_on_exit(self) -> Self:
        """Delete the workload when this program exits, or on Ctrl-C / SIGTERM."""
        if self._exit_hooked:
            return self
        self._exit_hooked = True
        atexit.register(self.delete)
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, _previous: Any = previous) -> None:
                self.delete()
                if callable(_previous):
                    _previous(signum, frame)
                else:
                    raise SystemExit(128 + signum)

            signal.signal(sig, handler)
        return self
