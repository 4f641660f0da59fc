"""`dora server api --workers N`: N API processes on one port.

Each worker is a whole API replica, the model the admin guide already runs (several
replicas on one database): it opens the store, bootstraps (exactly one prints the
admin token on `INIT_DB`), follows the change feed for users, roles and tokens, and
binds the port with ``SO_REUSEPORT``, so the kernel spreads new connections over the
workers. What is per process: the failed-login ban list and the per-token rate limit
(a client whose connections land on different workers gets up to N times the limit),
and the identity cache (a token revoked through one worker stops working on the
others as soon as they read the feed: one poll, 20 ms on SQLite).

The parent only supervises: it forwards SIGTERM/SIGINT to the workers, and when one
worker exits it stops the others and exits with that worker's status, for the
service manager to restart the whole set. Should the parent itself be killed
(SIGKILL, the OOM killer), the kernel sends each worker SIGTERM (Linux's parent-death
signal, set before the worker's program starts), so no orphan keeps the port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket that other workers of this user can bind too (uvicorn
    listens on it). IPv6 when `host` is an IPv6 address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def worker_command(args: Sequence[str]) -> list[str]:
    """The command line of one worker: this `dora server api`, binding with reuse."""
    return [sys.executable, "-m", "dora.cli.main", "server", "api", *args, "--reuse-port"]


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent thread exits."""


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """In a just-forked child (Popen's `preexec_fn`): get `sig` when the parent dies;
    if it died before this call could say so, exit now. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        return  # not fatal: the worker runs as before, without the guard
    if os.getppid() != parent:
        os._exit(1)


def supervise(args: Sequence[str], workers: int, *, poll_s: float = 0.2) -> int:
    """Run `workers` workers until a signal or until one exits; the exit status."""
    parent = os.getpid()
    # preexec_fn is safe here: the supervisor runs no other threads.
    procs = [
        subprocess.Popen(worker_command(args), preexec_fn=lambda: die_with_parent(parent))
        for _ in range(workers)
    ]
    stopping = False

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        status = 0
        while all(proc.poll() is None for proc in procs) and not stopping:
            time.sleep(poll_s)
        for proc in procs:
            code = proc.poll()
            if code is not None and not stopping:
                status = status or code or 1  # a worker that ends by itself is a failure
        if not stopping:
            stop(signal.SIGTERM, None)
        for proc in procs:
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if stopping and code not in (0, -signal.SIGTERM, -signal.SIGINT):
                status = status or code
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
