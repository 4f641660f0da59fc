"""Builders and waits shared by the conformance tests (no backend-specific code here)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from dora.store import Desired, Key, NewRecord

WORKER = Path(__file__).with_name("worker.py")


def key(name: str, *, kind: str = "Workload", zone: str = "z1", workspace: str = "w1") -> Key:
    return Key(kind, zone, workspace, name)


def container(name: str, *, zone: str = "z1", workspace: str = "w1") -> Key:
    return Key("Container", zone, workspace, name)


def new(
    k: Key,
    *,
    image: str = "busybox",
    replica: int = 1,
    owner: str = "alice",
    desired: Desired = "run",
    node: str = "",
    parent: str = "",
    computed: dict[str, Any] | None = None,
    observed: dict[str, Any] | None = None,
) -> NewRecord:
    return NewRecord(
        key=k,
        spec={"image": image, "replica": replica},
        owner=owner,
        meta={"labels": {"team": "a"}},
        desired=desired,
        computed=computed,
        observed=observed,
        node=node,
        parent=parent,
    )


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 5.0, what: str = "condition"
) -> None:
    """Poll `condition` until true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)


async def clock_passes(instant: float) -> None:
    """Wait until the wall clock is past `instant` (so the next timestamp is later)."""

    async def passed() -> bool:
        return time.time() > instant

    await wait_until(passed, what=f"the clock to pass {instant}")


class Workers:
    """Child processes running `worker.py` jobs against the same store.

    Each child opens the store, prints ``ready``, waits for ``go`` on stdin (so the
    racers start together), runs its job and prints one JSON line of results.
    """

    def __init__(self, env: dict[str, str], jobs: Sequence[dict[str, Any]]) -> None:
        self._env = env
        self._jobs = jobs
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Workers:
        for job in self._jobs:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                json.dumps({"env": self._env, **job}),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            self.procs.append(proc)
        for proc in self.procs:
            line = await self._line(proc, within=30)
            assert line == "ready", f"worker failed to start: {line!r}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    async def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()

    async def results(self, within: float = 60) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            line = await self._line(proc, within=within)
            assert await proc.wait() == 0, line
            out.append(json.loads(line))
        return out

    @staticmethod
    async def _line(proc: asyncio.subprocess.Process, *, within: float) -> str:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(proc.stdout.readline(), within)
        if not line:  # the child died: show why
            await proc.wait()
            err = (await proc.stderr.read()).decode(errors="replace")
            raise AssertionError(f"worker exited {proc.returncode}:\n{err}")
        return line.decode().strip()
