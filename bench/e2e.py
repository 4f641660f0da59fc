"""Headline benchmark: ``dora apply`` → every replica running, on ``dora up``.

Starts ``dora up`` as a separate process (its own ``--data-dir``, ``--port``, zone,
node name and ``DORA_CONFIG``), with a busybox image built locally (no registry; the
image is present, so no pull is timed). Then, measured in the same run:

- ``e2e``: one 1-replica workload applied through the SDK, timed until the API says
  its container is running (``observed.state == running``, as the agent reported it);
  ``--runs`` times (≥ 20), each workload deleted (and its container gone) before the
  next, p50 and p95;
- ``docker``: ``docker run -d`` of the same image and command, the same number of
  times, interleaved with the e2e runs: the physical floor;
- ``four``: one 4-replica workload, until all 4 run (p50 over ``--runs4`` runs);
- ``burst100``: 100 one-replica workloads applied from 4 client threads, until all
  100 run (one run).

For every e2e run the hops are taken from the records' own timestamps: apply → the
container record exists (scheduler reconcile) → ``Placed`` event (scheduler binding)
→ Docker's ``StartedAt`` (agent: long-poll + create + start) → the agent's report
reaches the API (``observed.reported_at``) → the client's next poll sees it. Their
medians are printed, so a bad ratio says where the time goes.

Usage: python bench/e2e.py [--runs 20] [--runs4 5] [--poll-ms 10]
The last line: ``e2e_p50_s=… docker_p50_s=… ratio=… burst100_s=…``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from dora.client import Client, NotFound
from dora.images import ensure_busybox_image

IMAGE = "dora-bench/busybox:1"
CMD = ["sleep", "3600"]
WS = "admin"
TAG = uuid.uuid4().hex[:8]
ZONE = f"bench-{TAG}"
NODE = f"bench-{TAG}"
FLOOR_LABEL = f"dora-bench.floor={TAG}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], Any], within: float, what: str, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {within} s waiting for {what}")
        time.sleep(poll)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def workload(name: str, replicas: int = 1, cpu: str = "100m") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Workload",
        "metadata": {"name": name, "zone": ZONE, "workspace": WS},
        "spec": {
            "replica": {"count": replicas},
            "selectors": {"cpu": {"count": cpu}},
            "image": {"image": IMAGE, "pullPolicy": "IfNotPresent"},
            "config": {"cmd": CMD, "restartPolicy": "Never"},
        },
    }


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return done.stdout


class Up:
    """``dora up`` in its own process; stopped with SIGINT (Ctrl-C) by pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "cli.yaml"
        self.log = (root / "up.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DORA_")}
        env.update(DORA_CONFIG=str(self.config), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "dora.cli.main", "up", "--data-dir", str(root / "data")]
        cmd += ["--port", str(self.port), "--zone", ZONE, "--node-name", NODE]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def text(self) -> str:
        return (self.root / "up.log").read_text(errors="replace")

    def token(self) -> str:
        def ready() -> str | None:
            if self.proc.poll() is not None:
                raise SystemExit(f"dora up exited:\n{self.text()}")
            if "Dora is up" not in self.text() or not self.config.exists():
                return None
            config = yaml.safe_load(self.config.read_text())
            return str(config["profiles"]["local"]["token"])

        token: str = wait_for(ready, 60, "dora up to start", poll=0.1)
        return token

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()


def running_count(dora: Client, name: str) -> int:
    rows = dora.list("Container", zone=ZONE, workspace=WS)
    return sum(1 for r in rows if r.parent == name and (r.observed or {}).get("state") == "running")


def wait_running(dora: Client, name: str, replicas: int, poll: float, within: float = 120) -> None:
    if replicas == 1:

        def one() -> bool:
            with contextlib.suppress(NotFound):
                record = dora.get("Container", f"{name}.1", zone=ZONE, workspace=WS)
                return (record.observed or {}).get("state") == "running"
            return False

        wait_for(one, within, f"{name} running", poll)
    else:
        wait_for(lambda: running_count(dora, name) >= replicas, within, f"{name} running", poll)


def delete_and_wait(dora: Client, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(NotFound):
            dora.delete("Workload", name, zone=ZONE, workspace=WS)

    def gone() -> bool:
        left = dora.list("Workload", zone=ZONE, workspace=WS)
        if any(w.name in names for w in left):
            return False
        out = docker("ps", "-aq", "--filter", f"label=dora.zone={ZONE}")
        return not out.strip()

    wait_for(gone, 120, "workloads and containers gone", poll=0.1)


def hops(dora: Client, name: str, applied_at: float, seen_at: float) -> dict[str, float]:
    """Each hop of one replica's way to running, from the records' timestamps."""
    container = dora.get("Container", f"{name}.1", zone=ZONE, workspace=WS)
    observed = container.observed or {}
    events = dora.events("Container", f"{name}.1", zone=ZONE, workspace=WS)
    placed = min((e.at for e in events if e.reason == "Placed"), default=float("nan"))
    started = float(observed.get("started_at") or "nan")
    reported = float(observed.get("reported_at") or "nan")
    created = docker_created(str(observed.get("container_id") or ""))
    return {
        "apply→record": container.created_at - applied_at,
        "record→placed": placed - container.created_at,
        "placed→docker_created": created - placed,
        "created→started": started - created,
        "started→reported": reported - started,
        "reported→seen": seen_at - reported,
    }


def docker_created(container_id: str) -> float:
    """Docker's ``Created`` time of a container (when the agent's create call landed)."""
    if not container_id:
        return float("nan")
    text = docker("inspect", "-f", "{{.Created}}", container_id).strip()
    stamp, _, fraction = text.rstrip("Z").partition(".")
    parsed = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC)
    return parsed.timestamp() + float(f"0.{fraction or '0'}")


def four_hops(dora: Client, name: str) -> str:
    """When each replica was placed and when Docker started it (s after the first
    placement)."""
    placed, started = [], []
    for k in range(1, 5):
        container = f"{name}.{k}"
        events = dora.events("Container", container, zone=ZONE, workspace=WS)
        placed.append(min(e.at for e in events if e.reason == "Placed"))
        record = dora.get("Container", container, zone=ZONE, workspace=WS)
        started.append(float((record.observed or {}).get("started_at") or "nan"))
    t0 = min(placed)
    return (
        "placed +"
        + ",".join(f"{p - t0:.2f}" for p in placed)
        + "  started +"
        + ",".join(f"{s - t0:.2f}" for s in sorted(started))
    )


AGENT_LIKE = ("--init", "--cpus", "0.1", "--memory", "1g", "--security-opt", "no-new-privileges")
"""`docker run` flags close to what the agent asks of Docker for a 100m replica."""


def remove_floor_containers() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={FLOOR_LABEL}").split()
    if ids:
        docker("rm", "-f", *ids)


def docker_run(*flags: str) -> float:
    started = time.perf_counter()
    docker("run", "-d", "--label", FLOOR_LABEL, *flags, IMAGE, *CMD)
    return time.perf_counter() - started


def docker_floor(*flags: str) -> float:
    """One ``docker run -d`` (container removed afterwards, untimed)."""
    elapsed = docker_run(*flags)
    remove_floor_containers()
    return elapsed


def docker_parallel(count: int, threads: int) -> float:
    """`count` ``docker run -d`` from `threads` threads: seconds until all returned."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: docker_run(), range(count)))
    elapsed = time.perf_counter() - started
    remove_floor_containers()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runs4", type=int, default=5)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=10.0)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    poll = args.poll_ms / 1000
    ensure_busybox_image(IMAGE)
    root = Path(tempfile.mkdtemp(prefix="dora-bench-e2e-"))
    up = Up(root)
    token = ""
    try:
        token = up.token()
        with Client(up.url, token) as dora:
            wait_for(
                lambda: any(n.status == "READY" for n in dora.list("Node", zone=ZONE)),
                60,
                "the node READY",
                0.1,
            )
            run_all(dora, token, args, poll)
    finally:
        if token and up.proc.poll() is None:
            with contextlib.suppress(Exception), Client(up.url, token) as dora:
                left = [w.name for w in dora.list("Workload", zone=ZONE, workspace=WS)]
                delete_and_wait(dora, left)
        up.stop()
        ids = docker("ps", "-aq", "--filter", f"label=dora.zone={ZONE}").split()
        ids += docker("ps", "-aq", "--filter", f"label={FLOOR_LABEL}").split()
        if ids:
            docker("rm", "-f", *ids)
        shutil.rmtree(root, ignore_errors=True)


def run_all(dora: Client, token: str, args: argparse.Namespace, poll: float) -> None:
    # Warm-up: the first container on a fresh agent and the first docker run pay one-off
    # costs (imports, connection pools); neither is counted.
    dora.apply(workload("warmup"))
    wait_running(dora, "warmup", 1, poll)
    delete_and_wait(dora, ["warmup"])
    docker_floor()

    e2e: list[float] = []
    floor: list[float] = []
    like: list[float] = []
    hop_rows: list[dict[str, float]] = []
    for i in range(args.runs):
        name = f"one-{i}"
        applied_at = time.time()
        started = time.perf_counter()
        dora.apply(workload(name))
        wait_running(dora, name, 1, poll)
        e2e.append(time.perf_counter() - started)
        hop_rows.append(hops(dora, name, applied_at, time.time()))
        delete_and_wait(dora, [name])
        floor.append(docker_floor())
        like.append(docker_floor(*AGENT_LIKE))
        print(
            f"run {i + 1:2d}: e2e {e2e[-1]:.3f} s   docker run -d {floor[-1]:.3f} s   "
            f"with the agent's flags {like[-1]:.3f} s",
            flush=True,
        )

    four: list[float] = []
    four_floor: list[float] = []
    for i in range(args.runs4):
        name = f"four-{i}"
        started = time.perf_counter()
        dora.apply(workload(name, replicas=4))
        wait_running(dora, name, 4, poll)
        four.append(time.perf_counter() - started)
        spread = four_hops(dora, name)
        delete_and_wait(dora, [name])
        four_floor.append(docker_parallel(4, 4))
        print(
            f"4 replicas {i + 1}: {four[-1]:.3f} s   {spread}   "
            f"4 parallel docker run -d {four_floor[-1]:.3f} s",
            flush=True,
        )

    names = [f"burst-{i}" for i in range(args.burst)]
    started = time.perf_counter()

    def apply_some(chunk: list[str]) -> None:
        with Client(dora.server, token) as client:
            for name in chunk:
                client.apply(workload(name, cpu="10m"))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(apply_some, [names[k::4] for k in range(4)]))
    applied = time.perf_counter() - started
    wait_for(lambda: _all_running(dora, names), 300, f"{args.burst} workloads running", poll=0.2)
    burst = time.perf_counter() - started
    print(f"burst of {args.burst}: applied in {applied:.2f} s, all running in {burst:.2f} s")
    delete_and_wait(dora, names)
    burst_floor = docker_parallel(args.burst, 4)
    print(f"{args.burst} docker run -d from 4 threads: {burst_floor:.2f} s")

    hop_medians = {k: statistics.median(r[k] for r in hop_rows) for k in hop_rows[0]}
    e2e_p50, e2e_p95 = pct(e2e, 0.5), pct(e2e, 0.95)
    docker_p50, docker_p95 = pct(floor, 0.5), pct(floor, 0.95)
    ratio = e2e_p50 / docker_p50
    print()
    python = platform.python_version()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {python}")
    print(f"docker: {docker('version', '--format', '{{.Server.Version}}').strip()}")
    print(f"e2e apply→running  p50 {e2e_p50:.3f} s  p95 {e2e_p95:.3f} s  ({args.runs} runs)")
    print(f"docker run -d      p50 {docker_p50:.3f} s  p95 {docker_p95:.3f} s  ({args.runs} runs)")
    print(f"  with agent flags p50 {pct(like, 0.5):.3f} s  ({' '.join(AGENT_LIKE)})")
    print(
        f"4 replicas         p50 {pct(four, 0.5):.3f} s  ({args.runs4} runs; 4 parallel "
        f"docker run -d p50 {pct(four_floor, 0.5):.3f} s)"
    )
    print(
        f"burst of {args.burst}       {burst:.2f} s (applies done after {applied:.2f} s; "
        f"{args.burst} docker run -d from 4 threads {burst_floor:.2f} s)"
    )
    print("hops (median s): " + "  ".join(f"{k} {v:.3f}" for k, v in hop_medians.items()))
    print(
        f"e2e_p50_s={e2e_p50:.3f} docker_p50_s={docker_p50:.3f} ratio={ratio:.2f} "
        f"burst100_s={burst:.2f}"
    )


def _all_running(dora: Client, names: list[str]) -> bool:
    rows = dora.list("Container", zone=ZONE, workspace=WS)
    wanted = set(names)
    return sum(
        1 for r in rows if r.parent in wanted and (r.observed or {}).get("state") == "running"
    ) >= len(wanted)


if __name__ == "__main__":
    main()
