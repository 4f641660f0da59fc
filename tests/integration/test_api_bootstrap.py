"""Bootstrap and replicas: the admin token is printed once, at the first database init;
several replicas on one database behave as one service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    ZONE,
    ApiProcess,
    api_replicas,
    assert_no_token_in_log,
    make_token,
    make_workspace,
    unique,
    wait_until,
    workload_doc,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    """Replica A (INIT_DB=true, first start) and replica B (no INIT_DB), one database."""
    with api_replicas(tmp_path_factory.mktemp("replicas")) as pair:
        yield pair


def test_first_start_prints_the_admin_token_once(cluster: tuple[ApiProcess, ApiProcess]) -> None:
    a, _ = cluster
    lines = [line for line in a.log_text().splitlines() if "admin token" in line.lower()]
    assert len(lines) == 1, lines
    token = a.admin_token()
    with a.client(token) as admin:
        me = admin.get("/v1/whoami").json()
    assert me["user"] == "admin"
    assert me["workspace"] == "admin"
    assert me["zone"] == ZONE


def test_second_replica_prints_no_token_and_accepts_the_admin_token(
    cluster: tuple[ApiProcess, ApiProcess],
) -> None:
    a, b = cluster
    assert b.admin_tokens_printed() == []
    assert "token" not in b.log_text().lower()
    with b.client(a.admin_token()) as admin_b:
        assert admin_b.get("/v1/whoami").status_code == 200


def test_replicas_see_each_others_writes(cluster: tuple[ApiProcess, ApiProcess]) -> None:
    a, b = cluster
    token = a.admin_token()
    ws_a, ws_b = unique("ws-a"), unique("ws-b")
    with a.client(token) as ca, b.client(token) as cb:
        make_workspace(ca, ws_a)
        make_workspace(cb, ws_b)
        # A write on one replica is read on the other at once (one database).
        assert cb.get(f"/v1/resources/workspace/{ws_a}").status_code == 200
        assert ca.get(f"/v1/resources/workspace/{ws_b}").status_code == 200
        wk = unique("wk")
        assert ca.post("/v1/apply", json=workload_doc(wk, workspace=ws_a)).status_code == 200
        listed = cb.get("/v1/resources/workload", params={"workspace": ws_a}).json()["items"]
        assert [w["name"] for w in listed] == [wk]
        # An apply on B of A's workload sees A's version: unchanged, not created.
        again = cb.post("/v1/apply", json=workload_doc(wk, workspace=ws_a)).json()
        assert again["status"] == "unchanged"


def test_token_created_on_one_replica_works_on_the_other(
    cluster: tuple[ApiProcess, ApiProcess],
) -> None:
    a, b = cluster
    with a.client(a.admin_token()) as ca:
        fresh = make_token(ca, "admin", "admin", unique("id"))
    with b.client(fresh.token) as cb:
        assert cb.get("/v1/whoami").status_code == 200


def test_token_revoked_on_one_replica_fails_on_the_other(
    cluster: tuple[ApiProcess, ApiProcess],
) -> None:
    a, b = cluster
    with a.client(a.admin_token()) as ca:
        doomed = make_token(ca, "admin", "admin", unique("id"))
        with b.client(doomed.token) as cb:
            assert cb.get("/v1/whoami").status_code == 200  # B has it cached now
            assert ca.delete(f"/v1/tokens/{doomed.jti}").status_code == 200
            # A refuses at once; B within the change feed's latency.
            with a.client(doomed.token) as revoked_a:
                assert revoked_a.get("/v1/whoami").status_code == 401
            wait_until(
                lambda: cb.get("/v1/whoami").status_code == 401,
                within=10,
                what="replica B to refuse a token revoked on replica A",
            )


def test_user_deleted_on_one_replica_fails_on_the_other(
    cluster: tuple[ApiProcess, ApiProcess],
) -> None:
    a, b = cluster
    name = unique("gone")
    with a.client(a.admin_token()) as ca:
        r = ca.post(
            "/v1/apply",
            json={"apiVersion": "v1", "kind": "User", "metadata": {"name": name}},
        )
        assert r.status_code == 200, r.text
        tok = make_token(ca, name, "admin")
        with b.client(tok.token) as cb:
            assert cb.get("/v1/whoami").status_code == 200
            assert ca.delete(f"/v1/resources/user/{name}").status_code == 200
            wait_until(
                lambda: cb.get("/v1/whoami").status_code == 401,
                within=10,
                what="replica B to refuse the token of a user deleted on A",
            )


def test_restart_with_init_db_prints_no_new_token(tmp_path: Path) -> None:
    with ApiProcess(tmp_path, name="first") as first:
        first.wait_ready()
        token = first.admin_token()
    with ApiProcess(tmp_path, name="restarted") as again:
        again.wait_ready()
        assert again.admin_tokens_printed() == []
        with again.client(token) as admin:
            assert admin.get("/v1/whoami").status_code == 200
    assert_no_token_in_log(again)


def test_replica_without_init_db_on_an_empty_database_exits_with_a_clear_message(
    tmp_path: Path,
) -> None:
    lonely = ApiProcess(tmp_path, init_db=False, name="uninitialized").start()
    try:
        code = lonely.wait_exit(timeout=30)
    finally:
        lonely.stop()
    assert code != 0
    log = lonely.log_text()
    assert "not initialized" in log
    assert "INIT_DB=true" in log
    assert "Traceback" not in log


def test_two_replicas_initializing_at_once_print_one_token(tmp_path: Path) -> None:
    """Both started with INIT_DB=true on an empty database at the same moment."""
    first = ApiProcess(tmp_path, name="race-1").start()
    second = ApiProcess(tmp_path, name="race-2").start()
    with first, second:
        first.wait_ready()
        second.wait_ready()
        printed = first.admin_tokens_printed() + second.admin_tokens_printed()
        assert len(printed) == 1, printed
        for replica in (first, second):
            with replica.client(printed[0]) as admin:
                assert admin.get("/v1/whoami").status_code == 200
    assert_no_token_in_log(first)
    assert_no_token_in_log(second)
