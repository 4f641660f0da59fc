"""API benchmark: authenticated list and apply at 1/10/50 concurrent clients, against
the framework floor, in one run.

    .venv/bin/python bench/api.py [--requests 20000] [--seconds 5] [--workloads 20]
                                  [--client raw|httpx] [--workers N]

Starts a real ``dora server api`` process (SQLite in a temporary directory, bound to
127.0.0.1; ``--workers N`` passes ``--workers N`` to it) and, beside it, a bare ASGI
endpoint served by uvicorn with the settings `dora server api` uses (same host, log
level, no proxy headers, uvloop, and the same access-log line per request,
`dora.api.access_log`): the most any route of this
framework can do on this machine. Then, from clients on 127.0.0.1 (each level
bounded by a request count and a time limit):

* ``get``   — ``GET /v1/resources/workload`` (a list of ``--workloads`` workloads),
              authenticated, the per-request path every client takes; nothing is
              written meanwhile, so after the first it is answered from the API's
              listing cache (`dora.api.list_cache`: authentication and RBAC still
              run for each request);
* ``get-nc`` — the same with ``Cache-Control: no-cache``: never answered from the
              cache, each one read from SQLite (what a listing costs when writes
              keep arriving between listings, as in a busy cluster);
* ``apply`` — ``POST /v1/apply`` of a new Workload each time (create: one record, its
              first spec version and a ``Created`` event, all written to SQLite);
* ``floor`` — ``GET /`` of the bare endpoint (a small JSON body).

Each client loop has its own connection (HTTP/1.1 keep-alive). The default client
(``raw``) writes each request's bytes and reads the answer by its Content-Length:
~0.1 ms of CPU per request, where httpx (``--client httpx``, the bench's first
client) spends ~2 ms, as much as the server, on the same two cores. The same client
drives all three targets. The table shows server CPU per request (from /proc, all
threads and workers) and the bench's own: the figures that do not depend on other
load on the machine.

The rate limit is raised for the run (`DORA_RATE_PER_S`): the bench measures the
server, not the limiter. It prints a table, then a last line::

    get_rps=… apply_p99_ms=… floor_rps=… ratio=…

with ``ratio = get_rps / floor_rps`` and ``apply_p99_ms``, both at 10 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import (  # noqa: E402  (the repository root goes on sys.path first)
    ApiProcess,
    apply_many,
    doc,
    free_port,
    workload_doc,
)

from dora.api.access_log import AccessLog  # noqa: E402

LEVELS = (1, 10, 50)
WORKSPACE = "bench"
APPLY_WORKSPACE = "bench-apply"
"""Applied workloads go elsewhere, so the listed workspace keeps its size."""
HOST = "127.0.0.1"


# --------------------------------------------------------------------- the floor


FLOOR_ACCESS_LOG = AccessLog(enabled=True)


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare ASGI endpoint: a fixed small JSON answer, no routing, no framework;
    one access-log line per request, as `dora server api` writes it."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    start = time.perf_counter()
    body = b'{"items":[]}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"12")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    FLOOR_ACCESS_LOG.write(scope, 200, time.perf_counter() - start)


def serve_floor(port: int) -> None:
    import uvicorn

    # The same uvicorn settings `dora server api` passes (see dora.cli.server).
    uvicorn.run(
        floor_app,
        host=HOST,
        port=port,
        log_level="info",
        proxy_headers=False,
        access_log=False,
    )


class FloorProcess:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-floor", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the floor server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("the floor server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


# --------------------------------------------------------------------- the load


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the bench's own loop where installed: the same for every target."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@dataclass
class Result:
    name: str
    clients: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float = float("nan")
    client_cpu_s: float = float("nan")

    @property
    def cpu_ms(self) -> float:
        """Server CPU (all its threads) per request."""
        return self.server_cpu_s / self.requests * 1000 if self.requests else float("nan")

    @property
    def client_cpu_ms(self) -> float:
        """The bench's own CPU per request (it shares the machine with the server)."""
        return self.client_cpu_s / self.requests * 1000 if self.requests else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (`--workers`)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(t.user + t.system for t in (p.cpu_times() for p in procs))
    except psutil.Error:
        return float("nan")


def wait_workers(api: ApiProcess, workers: int, timeout: float = 30.0) -> None:
    """Until `workers` worker processes listen on the API's port (`--workers` > 1)."""
    assert api.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(api.proc.pid).children()
        listening = [
            c
            for c in children
            if any(
                s.status == psutil.CONN_LISTEN and s.laddr.port == api.port
                for s in c.net_connections(kind="tcp")
            )
        ]
        if len(listening) == workers:
            return
        time.sleep(0.05)
    raise RuntimeError(f"not all {workers} API workers listen after {timeout} s")


# --------------------------------------------------------------------- the clients


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on one connection: the request bytes are
    written as they are, the answer is read by its Content-Length (or its chunks).
    It spends a few tens of microseconds of CPU per request where httpx spends ~2 ms,
    so on a small machine the figures are the server's, not the client's."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host, self.port = host, port
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._head = f"Host: {host}:{port}\r\n{auth}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawClient:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def request(
        self, method: str, path: str, body: bytes | None = None, fresh: bool = False
    ) -> int:
        """Send one request, read the whole answer; its status. `fresh` asks for an
        answer not served from a cache (``Cache-Control: no-cache``)."""
        assert self._reader is not None and self._writer is not None
        line = f"{method} {path} HTTP/1.1\r\n".encode()
        if fresh:
            line += b"Cache-Control: no-cache\r\n"
        if body is None:
            self._writer.write(line + self._head + b"\r\n")
        else:
            length = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            self._writer.write(line + self._head + length.encode() + body)
        head = (await self._reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        at = head.find(b"content-length:")
        if at >= 0:
            await self._reader.readexactly(int(head[at + 15 : head.index(b"\r\n", at)]))
        elif b"transfer-encoding: chunked" in head:
            while size := int((await self._reader.readuntil(b"\r\n"))[:-2], 16):
                await self._reader.readexactly(size + 2)
            await self._reader.readuntil(b"\r\n")
        if b"connection: close" in head:
            await self.__aexit__()
            await self.__aenter__()
        return status


class HttpxClient:
    """The same interface over httpx (`--client httpx`: what the bench used first)."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}", headers=headers, limits=limits, timeout=30
        )

    async def __aenter__(self) -> HttpxClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.__aexit__(None, None, None)

    async def request(
        self, method: str, path: str, body: bytes | None = None, fresh: bool = False
    ) -> int:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        r = await self._client.request(method, path, content=body, headers=headers)
        return r.status_code


Client = RawClient | HttpxClient
CLIENTS: dict[str, type[RawClient] | type[HttpxClient]] = {"raw": RawClient, "httpx": HttpxClient}
Request = Callable[[Client, int], Awaitable[int]]


async def drive(
    name: str,
    base_url: str,
    token: str | None,
    clients: int,
    make_request: Request,
    *,
    total: int,
    seconds: float,
    server_pid: int,
    client_kind: str = "raw",
    expect: int = 200,
) -> Result:
    """`clients` concurrent loops, each with its own client and connection, until
    `total` requests are sent or `seconds` have passed."""
    url = httpx.URL(base_url)
    latencies: list[float] = []
    errors = 0
    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(CLIENTS[client_kind](url.host, url.port or 80, token))
            for _ in range(clients)
        ]
        # Warm up every connection (and the server's caches) before measuring.
        await asyncio.gather(*(make_request(c, -1 - i) for i, c in enumerate(pool)))
        cpu_start, own_start = cpu_seconds(server_pid), time.process_time()
        start = time.perf_counter()
        deadline = start + seconds

        async def loop(client: Client) -> None:
            nonlocal errors, sent
            while sent < total and time.perf_counter() < deadline:
                n = sent
                sent += 1
                t0 = time.perf_counter()
                status = await make_request(client, n)
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != expect:
                    errors += 1

        await asyncio.gather(*(loop(c) for c in pool))
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(server_pid) - cpu_start
        own = time.process_time() - own_start
    return Result(name, clients, len(latencies), errors, elapsed, latencies, cpu, own)


LIST_PATH = f"/v1/resources/workload?workspace={WORKSPACE}"


def list_request(client: Client, n: int) -> Awaitable[int]:
    return client.request("GET", LIST_PATH)


def fresh_list_request(client: Client, n: int) -> Awaitable[int]:
    """The same listing, past the API's listing cache (every one reads SQLite)."""
    return client.request("GET", LIST_PATH, fresh=True)


def apply_request(run_id: str) -> Request:
    def request(client: Client, n: int) -> Awaitable[int]:
        name = f"a{run_id}-{'w' if n < 0 else ''}{abs(n)}"
        body = json.dumps(workload_doc(name, workspace=APPLY_WORKSPACE)).encode()
        return client.request("POST", "/v1/apply", body)

    return request


def floor_request(client: Client, n: int) -> Awaitable[int]:
    return client.request("GET", "/")


# --------------------------------------------------------------------- main


def print_table(results: list[Result]) -> None:
    print(
        f"{'test':<7} {'clients':>7} {'requests':>8} {'errors':>6} {'rps':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'server cpu ms/req':>18} "
        f"{'client cpu ms/req':>18}"
    )
    for r in results:
        print(
            f"{r.name:<7} {r.clients:>7} {r.requests:>8} {r.errors:>6} {r.rps:>9.0f} "
            f"{r.pct(0.50):>8.2f} {r.pct(0.99):>8.2f} {max(r.latencies_ms):>8.2f} "
            f"{r.cpu_ms:>18.2f} {r.client_cpu_ms:>18.2f}"
        )


async def bench(api: ApiProcess, token: str, floor: FloorProcess, args: argparse.Namespace) -> None:
    assert api.proc is not None
    pid = api.proc.pid
    results: list[Result] = []
    for clients in LEVELS:
        levels: list[tuple[str, str, str | None, Request, int, int]] = [
            ("floor", floor.url, None, floor_request, args.requests, floor.proc.pid),
            ("get", api.url, token, list_request, args.requests, pid),
            ("get-nc", api.url, token, fresh_list_request, args.requests, pid),
            ("apply", api.url, token, apply_request(f"{clients}"), args.apply_requests, pid),
        ]
        for name, url, auth, request, total, server_pid in levels:
            results.append(
                await drive(
                    name,
                    url,
                    auth,
                    clients,
                    request,
                    total=total,
                    seconds=args.seconds,
                    server_pid=server_pid,
                    client_kind=args.client,
                )
            )
    print_table(results)
    at10 = {r.name: r for r in results if r.clients == 10}
    failed = sum(r.errors for r in results)
    if failed:
        print(f"WARNING: {failed} requests did not get the expected status")
    get_rps, floor_rps = at10["get"].rps, at10["floor"].rps
    fresh = at10["get-nc"]
    print(
        f"read from SQLite every time (get-nc, Cache-Control: no-cache): rps={fresh.rps:.0f} "
        f"ratio={fresh.rps / floor_rps:.2f} server_cpu_ms={fresh.cpu_ms:.2f}"
    )
    print(
        f"get_rps={get_rps:.0f} apply_p99_ms={at10['apply'].pct(0.99):.1f} "
        f"floor_rps={floor_rps:.0f} ratio={get_rps / floor_rps:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=20000, help="per level, get, get-nc and floor"
    )
    parser.add_argument("--apply-requests", type=int, default=1000, help="per level, apply")
    parser.add_argument("--seconds", type=float, default=5.0, help="time limit per level")
    parser.add_argument("--workloads", type=int, default=20, help="workloads in the list")
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="raw",
        help="raw: a minimal HTTP/1.1 client (default); httpx: the first bench's client",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="`dora server api --workers N` (default 1)"
    )
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return
    with tempfile.TemporaryDirectory(prefix="dora-bench-api-") as tmp:
        env = {"DORA_RATE_PER_S": "1000000000", "DORA_RATE_BURST": "1000000000"}
        server_args = ["--workers", str(args.workers)] if args.workers > 1 else []
        api = ApiProcess(Path(tmp), env=env, name="bench", args=server_args)
        floor = FloorProcess(Path(tmp) / "floor.log")
        try:
            api.start().wait_ready()
            if args.workers > 1:
                wait_workers(api, args.workers)
            floor.wait_ready()
            token = api.admin_token()
            with api.client(token) as admin:
                apply_many(admin, [doc("Workspace", WORKSPACE), doc("Workspace", APPLY_WORKSPACE)])
                apply_many(
                    admin,
                    [
                        workload_doc(f"listed-{i}", workspace=WORKSPACE)
                        for i in range(args.workloads)
                    ],
                )
            print(
                f"server: {api.url} (SQLite in {tmp}); floor: {floor.url}; "
                f"list of {args.workloads} workloads; cpus: {os.cpu_count()}; "
                f"client: {args.client}; workers: {args.workers}"
            )
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(bench(api, token, floor, args))
        finally:
            floor.stop()
            api.stop()


if __name__ == "__main__":
    main()
