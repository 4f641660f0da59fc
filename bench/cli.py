"""CLI client time: ``dora get nodes`` on a cluster of 200 reporting nodes.

    .venv/bin/python bench/cli.py [--nodes 200] [--runs 15]

Starts a real API server (``dora server api``, embedded SQLite in a temporary folder),
creates the Node records through the API and sends one report per node (8 GPUs each)
through the node route with the ``node`` user's token, the way agents do. Then:

- ``get_nodes_200_s``: p50 wall time of the whole ``python -m dora.cli.main get nodes``
  subprocess (interpreter start, imports, profile, HTTP request, table) — the time a
  user waits; also its CPU time (user+sys of the child), which the server's work
  does not count in;
- ``fetch_ms``: p50 of the same HTTP request from a warm in-process client (mostly the
  server's share of the figure above);
- ``render_ms``: p50 of `dora.cli.tables.render` alone on the fetched rows;
- ``python_startup_s``: p50 of a bare ``python -c pass`` — the floor, measured in the
  same run;
- the heaviest imports of one ``get nodes`` (``python -X importtime``).

Bytecode: like an installed CLI after its first run, the measured runs use compiled
bytecode (written once, by a warm-up run, under a temporary PYTHONPYCACHEPREFIX, even
when the environment sets PYTHONDONTWRITEBYTECODE). The figure without any bytecode
(every import compiled from source at each start) is printed too, as
``get_nodes_nopyc_s``. The issue's target: under 0.5 s of client time.

The last line holds the three headline figures as key=value.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

ZONE = "bench"
PYTHON = sys.executable
CLI = [PYTHON, "-m", "dora.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def api_server(data_dir: Path, env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """A fresh API server; (url, admin token). Stopped by pid on exit."""
    port = free_port()
    log_path = data_dir / "api.log"
    server_env = {k: v for k, v in env.items() if not k.startswith("DORA_")}
    server_env.update(
        ZONE=ZONE,
        secret=secrets.token_hex(32),
        INIT_DB="true",
        DORA_DATA_DIR=str(data_dir),
        DB_NAME="bench",
        DORA_RATE_PER_S="100000",
        DORA_RATE_BURST="100000",
        PYTHONUNBUFFERED="1",
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*CLI, "server", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"API server exited:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("API server not ready after 60 s")
            time.sleep(0.05)
        found = re.search(r"admin token[^\n]*?:\s*(\S+)\s*$", log_path.read_text(), re.I | re.M)
        if not found:
            raise SystemExit("no admin token in the API server's log")
        yield url, found.group(1)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def make_cluster(url: str, admin_token: str, nodes: int) -> None:
    """Node records, the guide's node role and user, a node token, one report per node."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Role",
            "metadata": {"name": "node-rep"},
            "spec": {"permission": {"Node": ["report"]}},
        },
        {
            "apiVersion": "v1",
            "kind": "User",
            "metadata": {"name": "node"},
            "spec": {
                "resources": [
                    {"kind": "Node", "zone": "All", "workspace": "All", "role": "node-rep"}
                ]
            },
        },
    ]
    docs += [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"zone": ZONE, "name": f"node{i:03d}"},
            "spec": {
                "endpoint": f"https://127.0.{i // 250}.{i % 250 + 1}:3001",
                "allow": ["GPUWorkload"],
            },
        }
        for i in range(nodes)
    ]
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as admin:
        r = admin.post("/v1/apply-many", json=docs)
        r.raise_for_status()
        failed = [item for item in r.json()["items"] if not item["ok"]]
        if failed:
            raise SystemExit(f"apply failed: {failed[:3]}")
        r = admin.post("/v1/tokens", json={"user": "node", "workspace": "node", "id": "bench"})
        r.raise_for_status()
        node_token = r.json()["token"]
    report = {
        "version": "0.9.0",
        "arch": "x86_64",
        "cpu_model": "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz",
        "cpu_count": 56,
        "memory_total": 512 << 30,
        "gpus": [
            {
                "index": g,
                "product_name": "NVIDIA H200",
                "memory_total_mb": 143771,
                "memory_used_mb": 0,
                "temperature_c": 35,
                "temperature_max_c": 90,
                "power_draw_w": 75.0,
                "power_limit_w": 700,
            }
            for g in range(8)
        ],
    }
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {node_token}"}, timeout=60
    ) as agent:
        for i in range(nodes):
            r = agent.post(
                f"/v1/nodes/node{i:03d}/report",
                json=report,
                headers={"X-Dora-Agent": f"bench-{i}"},
            )
            r.raise_for_status()


def timed_run(argv: list[str], env: Mapping[str, str]) -> tuple[float, float, str]:
    """(wall s, child CPU s, stdout) of one subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}):\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def p50(values: list[float]) -> float:
    return statistics.median(values)


def heaviest_imports(env: Mapping[str, str], top: int = 8) -> list[tuple[float, str]]:
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", *CLI[1:], "get", "nodes"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    )
    found = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match and len(match.group(2)) <= 2:  # top-level imports and their children
            found.append((int(match.group(1)) / 1000, match.group(2) + match.group(3)))
    return sorted(found, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    runs = max(10, args.runs)

    with tempfile.TemporaryDirectory(prefix="dora-bench-cli-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith("DORA_")}
        warm_env = {
            **base,
            "PYTHONDONTWRITEBYTECODE": "",
            "PYTHONPYCACHEPREFIX": str(root / "pycache"),
        }
        nopyc_env = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
        nopyc_env.pop("PYTHONPYCACHEPREFIX", None)
        with api_server(root / "data", warm_env) as (url, admin_token):
            t0 = time.perf_counter()
            make_cluster(url, admin_token, args.nodes)
            print(
                f"cluster: {args.nodes} nodes created and reported in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            config = root / "home" / ".dora" / "config"
            config.parent.mkdir(parents=True)
            config.write_text(
                yaml.safe_dump(
                    {
                        "current": "bench",
                        "profiles": {"bench": {"server": url, "token": admin_token}},
                    }
                )
            )
            config.chmod(0o600)
            for env in (warm_env, nopyc_env):
                env.update(DORA_CONFIG=str(config), HOME=str(root / "home"))

            argv = [*CLI, "get", "nodes"]
            _, _, table = timed_run(argv, warm_env)  # warm-up: writes the bytecode
            lines = table.splitlines()
            assert len(lines) == args.nodes + 2, f"expected {args.nodes} rows:\n{table[:500]}"
            assert all(" READY " in line for line in lines[2:]), "some node is not READY"

            startup = [timed_run([PYTHON, "-c", "pass"], warm_env)[0] for _ in range(runs)]
            warm = [timed_run(argv, warm_env) for _ in range(runs)]
            cold = [timed_run(argv, nopyc_env) for _ in range(max(3, runs // 3))]

            from dora.cli.tables import render
            from dora.client import Client

            fetch, render_s = [], []
            with Client(url, admin_token) as dora:
                dora.list("Node")
                for _ in range(runs):
                    start = time.perf_counter()
                    items = dora.list("Node")
                    rows = [item.model_dump(mode="json") for item in items]
                    fetch.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    render("Node", rows, time.time())
                    render_s.append(time.perf_counter() - start)
            imports = heaviest_imports(warm_env)

    get_wall = p50([w for w, _, _ in warm])
    get_cpu = p50([c for _, c, _ in warm])
    print(f"python -c pass:              p50 {p50(startup) * 1000:7.1f} ms wall")
    print(
        f"dora get nodes ({args.nodes}, bytecode): p50 {get_wall * 1000:7.1f} ms wall, "
        f"{get_cpu * 1000:7.1f} ms CPU  (max {max(w for w, _, _ in warm) * 1000:.1f} ms)"
    )
    print(f"dora get nodes (no bytecode): p50 {p50([w for w, _, _ in cold]) * 1000:7.1f} ms wall")
    print(f"fetch in-process (HTTP + parse): p50 {p50(fetch) * 1000:7.1f} ms")
    print(f"render alone:                p50 {p50(render_s) * 1000:7.2f} ms")
    print("heaviest imports of `dora get nodes` (cumulative ms):")
    for ms, name in imports:
        print(f"  {ms:7.1f}  {name}")
    print(
        f"get_nodes_cpu_s={get_cpu:.3f} get_nodes_nopyc_s={p50([w for w, _, _ in cold]):.3f} "
        f"fetch_ms={p50(fetch) * 1000:.1f}"
    )
    print(
        f"get_nodes_{args.nodes}_s={get_wall:.3f} render_ms={p50(render_s) * 1000:.2f} "
        f"python_startup_s={p50(startup):.3f}"
    )


if __name__ == "__main__":
    main()
