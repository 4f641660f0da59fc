"""`dora server api --workers N`: N full API processes on one port (SO_REUSEPORT), one
admin token printed, revocation seen by every worker, stopped and failing together."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.helpers import (
    SEED_USER,
    ApiProcess,
    apply_many,
    assert_no_token_in_log,
    make_token,
    seed_documents,
    unique,
    wait_until,
)

WORKERS = 2
CONNECTIONS = 12
"""Fresh connections per check: the kernel spreads them over the workers by hash."""


def _workers(api: ApiProcess) -> list[psutil.Process]:
    assert api.proc is not None
    return psutil.Process(api.proc.pid).children()


def _listening(proc: psutil.Process, port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port
        for c in proc.net_connections(kind="tcp")
    )


def _all_listening(api: ApiProcess) -> bool:
    workers = _workers(api)
    return len(workers) == WORKERS and all(_listening(w, api.port) for w in workers)


def _statuses(api: ApiProcess, token: str) -> set[int]:
    """/v1/whoami's status over several new connections (one request each)."""
    out = set()
    for _ in range(CONNECTIONS):
        with api.client(token) as c:
            out.add(c.get("/v1/whoami").status_code)
    return out


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    args = ["--workers", str(WORKERS)]
    with ApiProcess(tmp_path_factory.mktemp("workers"), name="workers", args=args) as api:
        api.wait_ready()
        wait_until(lambda: _all_listening(api), within=30, what="every worker to listen")
        yield api
    assert_no_token_in_log(api)


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        apply_many(c, seed_documents())
        yield c


def test_every_worker_listens_on_the_one_port_and_one_admin_token_is_printed(
    api: ApiProcess, admin: httpx.Client
) -> None:
    workers = _workers(api)
    assert len({w.pid for w in workers}) == WORKERS
    assert all(_listening(w, api.port) for w in workers)
    assert len(api.admin_tokens_printed()) == 1  # every worker bootstrapped, one won
    assert _statuses(api, api.admin_token()) == {200}


def test_a_token_made_on_one_worker_works_on_all_and_its_revocation_too(
    api: ApiProcess, admin: httpx.Client
) -> None:
    token = make_token(admin, SEED_USER, SEED_USER, unique("id"))
    assert _statuses(api, token.token) == {200}  # workers that did not issue it ask the store
    assert admin.delete(f"/v1/tokens/{token.jti}").status_code == 200
    # The other workers read the revocation from the change feed within one poll.
    wait_until(lambda: _statuses(api, token.token) == {401}, within=10, what="401 on every worker")


def test_a_worker_that_dies_stops_the_others_and_the_command_fails(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    args = ["--workers", str(WORKERS)]
    with ApiProcess(tmp_path_factory.mktemp("dying"), name="dying", args=args) as api:
        api.wait_ready()
        wait_until(lambda: _all_listening(api), within=30, what="every worker to listen")
        first, second = _workers(api)
        os.kill(first.pid, signal.SIGKILL)
        assert api.wait_exit(timeout=30) != 0
        assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE


def test_sigterm_stops_every_worker_cleanly(tmp_path_factory: pytest.TempPathFactory) -> None:
    args = ["--workers", str(WORKERS)]
    with ApiProcess(tmp_path_factory.mktemp("stopping"), name="stopping", args=args) as api:
        api.wait_ready()
        wait_until(lambda: _all_listening(api), within=30, what="every worker to listen")
        workers = _workers(api)
        assert api.stop() == 0
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive


def test_workers_of_a_killed_supervisor_stop_too(tmp_path_factory: pytest.TempPathFactory) -> None:
    args = ["--workers", str(WORKERS)]
    with ApiProcess(tmp_path_factory.mktemp("orphans"), name="orphans", args=args) as api:
        api.wait_ready()
        wait_until(lambda: _all_listening(api), within=30, what="every worker to listen")
        workers = _workers(api)
        assert api.proc is not None
        os.kill(api.proc.pid, signal.SIGKILL)  # no chance to stop them itself
        api.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=20)
        for orphan in alive:  # leave nothing behind, even when the check fails
            orphan.kill()
        assert not alive, f"workers outlived their supervisor: {[p.pid for p in alive]}"
