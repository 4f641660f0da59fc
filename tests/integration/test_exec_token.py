"""Container Token, Pause and Resume end to end: a real API server, a real node agent,
real Docker containers (busybox built locally).

* ``POST /v1/containers/{name}/token`` → a container token that opens the shell
  WebSocket as ``?token=`` (what a browser, which cannot set headers, needs): once,
  for that container only, until it expires, while the user still holds Shell.
* ``POST /v1/containers/{name}/pause|resume`` → ``docker pause``/``unpause`` on the
  node; the container keeps its booking meanwhile.

Container records are assigned to the node in the store, as the scheduler would."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from dora.client import AsyncClient, Client, Conflict, Forbidden
from dora.exec_protocol import EOF_FRAME
from tests.helpers import (
    ZONE,
    ApiProcess,
    apply,
    apply_many,
    assert_no_token_in_log,
    grant,
    leaked_tokens,
    make_token,
    remember,
    role_doc,
    unique,
    user_doc,
    wait_until,
    workload_doc,
)
from tests.integration.exec_fixtures import ExecEnv, exec_env_fixture, scoped
from tests.integration.node_fixtures import WORKSPACE, inspect

TTL_S = 4.0
"""The API's container-token life in this module (DORA_CONTAINER_TOKEN_TTL_S)."""
env = exec_env_fixture({"DORA_CONTAINER_TOKEN_TTL_S": str(TTL_S)})
SCOPE = {"zone": ZONE, "workspace": WORKSPACE}
VERBS = ["Get", "Describe", "Event", "Shell", "Token", "Pause", "Resume"]


@pytest.fixture(scope="module")
def users(env: ExecEnv) -> dict[str, str]:
    """ops: every container verb here; token-only: Token but not Shell."""
    apply_many(
        env.cluster.admin,
        [
            role_doc("ctr-ops", {"Container": VERBS}),
            role_doc("ctr-token-only", {"Container": ["Get", "Token"]}),
            user_doc("ctr-ops", [grant("Container", "ctr-ops", workspace=WORKSPACE)]),
            user_doc("ctr-token-only", [grant("Container", "ctr-token-only", workspace=WORKSPACE)]),
        ],
    )
    return {
        user: remember(make_token(env.cluster.admin, f"ctr-{user}", WORKSPACE).token)
        for user in ("ops", "token-only")
    }


@pytest.fixture(scope="module")
def target(env: ExecEnv) -> str:
    """A running container that belongs to a Workload record."""
    name = env.run_container("sleep 3600")
    apply(env.cluster.admin, workload_doc(name.rsplit(".", 1)[0], workspace=WORKSPACE))
    return name


def container_token(env: ExecEnv, token: str, name: str, **scope: str) -> dict[str, Any]:
    with env.api.client(token) as http:
        r = http.post(f"/v1/containers/{name}/token", params=scope or SCOPE)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    remember(body["token"])
    return body


def shell(
    env: ExecEnv,
    name: str,
    *,
    headers: dict[str, str] | None = None,
    source: str | None = None,
    api: ApiProcess | None = None,
    **query: str,
) -> tuple[int, Any]:
    """Open the shell WebSocket running `true` on `api` (the module's server by
    default): (101, frames) or (status, JSON body)."""
    base = (api or env.api).url
    url = base.replace("http://", "ws://") + f"/v1/containers/{name}/shell"
    sock = None
    if source is not None:
        parts = urlsplit(base)
        assert parts.hostname and parts.port
        sock = socket.create_connection((parts.hostname, parts.port), source_address=(source, 0))
    try:
        with connect(
            f"{url}?{urlencode({'cmd': 'true', **query})}",
            additional_headers=headers or {},
            sock=sock,
            open_timeout=20,
        ) as ws:
            ws.send(EOF_FRAME)
            return 101, list(ws)
    except InvalidStatus as exc:
        return exc.response.status_code, json.loads(exc.response.body or b"{}")
    finally:
        if sock is not None:
            sock.close()


# ------------------------------------------------------------------------------ token


def test_a_container_token_opens_the_shell_once(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    before = time.time()
    issued = container_token(env, users["ops"], target)
    assert before + TTL_S - 1 <= issued["expires_at"] <= time.time() + TTL_S + 1
    status, frames = shell(env, target, token=issued["token"], **SCOPE)
    assert (status, frames[-1]) == (101, '{"exit": 0}')
    status, body = shell(env, target, token=issued["token"], **SCOPE)
    assert status == 401 and "already used" in body["message"], body
    # Zone and workspace may be left out: the token names them.
    status, frames = shell(env, target, token=container_token(env, users["ops"], target)["token"])
    assert (status, frames[-1]) == (101, '{"exit": 0}')


def test_a_container_token_used_on_one_replica_is_refused_on_another(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    """Two API replicas on one database (the guide's setup): the single use holds
    across them, since each redemption claims the token in the store."""
    replica = ApiProcess(
        env.api.data_dir,
        init_db=False,
        name="replica-b",
        env={
            k: v for k, v in env.api.env.items() if k.startswith("DORA_") and k != "DORA_DATA_DIR"
        },
    )
    with replica:
        replica.wait_ready()
        issued = container_token(env, users["ops"], target)["token"]
        status, frames = shell(env, target, token=issued, **SCOPE)
        assert (status, frames[-1]) == (101, '{"exit": 0}')
        status, body = shell(env, target, api=replica, token=issued, **SCOPE)
        assert status == 401 and "already used" in body["message"], body
        # …and the other way round: redeemed first on the replica, refused here.
        issued = container_token(env, users["ops"], target)["token"]
        status, frames = shell(env, target, api=replica, token=issued, **SCOPE)
        assert (status, frames[-1]) == (101, '{"exit": 0}')
        status, body = shell(env, target, token=issued, **SCOPE)
        assert status == 401 and "already used" in body["message"], body
    assert_no_token_in_log(replica)


def test_an_expired_container_token_is_refused(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    issued = container_token(env, users["ops"], target)
    wait_until(lambda: time.time() > issued["expires_at"] + 0.2, within=TTL_S + 5, what="expiry")
    status, body = shell(env, target, token=issued["token"], **SCOPE)
    assert status == 401 and "expired" in body["message"], body


def test_a_container_token_opens_only_its_own_container(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    other = env.run_container("sleep 3600")
    status, body = shell(
        env, other, token=container_token(env, users["ops"], target)["token"], **SCOPE
    )
    assert status == 403 and target in body["message"], body
    issued = container_token(env, users["ops"], target)
    status, body = shell(env, target, token=issued["token"], zone=ZONE, workspace="elsewhere")
    assert status == 403 and WORKSPACE in body["message"], body
    # A container re-created under the same name (new uid) is another container.
    issued = container_token(env, users["ops"], other)
    env.cluster.delete_record(other)
    env.cluster.put(env.node.name, other)
    status, body = shell(env, other, token=issued["token"], **SCOPE)
    assert status == 403 and "re-created" in body["message"], body


def test_api_tokens_and_container_tokens_are_not_interchangeable(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    status, body = shell(env, target, token=users["ops"], **SCOPE)
    assert status == 401 and "not a container token" in body["message"], body
    issued = container_token(env, users["ops"], target)["token"]
    bearer = {"Authorization": f"Bearer {issued}"}
    with env.api.client(issued) as http:
        for path in ("/v1/whoami", f"/v1/resources/container/{target}"):
            r = http.get(path, params=SCOPE)
            assert r.status_code == 401, (path, r.text)
        r = http.post(f"/v1/containers/{target}/token", params=SCOPE)
        assert r.status_code == 401, r.text
    assert shell(env, target, headers=bearer, **SCOPE)[0] == 401
    # With an Authorization header, ?token= is not looked at: the header decides.
    good = {"Authorization": f"Bearer {users['ops']}"}
    assert shell(env, target, headers=good, token="garbage", **SCOPE)[0] == 101


def test_the_shell_verb_is_checked_when_the_token_is_used(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    issued = container_token(env, users["token-only"], target)
    status, body = shell(env, target, token=issued["token"], **SCOPE)
    assert status == 403 and "may not Shell Container" in body["message"], body
    with Client(env.api.url, env.tokens["dev"]) as dev, pytest.raises(Forbidden, match="Token"):
        dev.container_token(target, **SCOPE)  # Shell and Log, but not Token


def test_revoking_the_api_token_revokes_its_container_tokens(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    parent = make_token(env.cluster.admin, "ctr-ops", WORKSPACE, unique("parent"))
    with Client(env.api.url, remember(parent.token)) as ops:
        issued = remember(ops.container_token(target, **SCOPE).token)
    assert env.cluster.admin.delete(f"/v1/tokens/{parent.jti}").status_code == 200
    status, body = shell(env, target, token=issued, **SCOPE)
    assert status == 401 and "revoked" in body["message"], body


def test_origin_check_and_failed_auth_ban_apply_to_container_tokens(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    issued = container_token(env, users["ops"], target)["token"]
    evil = {"Origin": "https://evil.example"}
    status, body = shell(env, target, headers=evil, token=issued, **SCOPE)
    assert status == 403 and "cross-site" in body["message"], body
    # From an address of its own: bad tokens count as failed logins until it is banned.
    source = "127.0.0.77"
    statuses = [shell(env, target, source=source, token="eyJ.bad.token")[0] for _ in range(10)]
    assert statuses == [401] * 10
    status, body = shell(env, target, source=source, token=issued, **SCOPE)
    assert status == 429 and "failed authentications" in body["message"], body
    # Not banned: the same (still unused) token works from elsewhere.
    assert shell(env, target, token=issued, **SCOPE)[0] == 101


def test_the_async_sdk_gets_container_tokens(
    env: ExecEnv, users: dict[str, str], target: str
) -> None:
    async def get() -> str:
        async with AsyncClient(env.api.url, users["ops"]) as ops:
            return (await ops.container_token(target, **SCOPE)).token

    assert shell(env, target, token=remember(asyncio.run(get())), **SCOPE)[0] == 101


# ------------------------------------------------------------------------------ pause


def test_pause_freezes_the_container_and_keeps_its_booking(
    env: ExecEnv, users: dict[str, str]
) -> None:
    name = env.run_container("sleep 3600")
    workload = name.rsplit(".", 1)[0]
    apply(env.cluster.admin, workload_doc(workload, workspace=WORKSPACE))
    with Client(env.api.url, users["ops"]) as ops:
        before = ops.get("container", name, **SCOPE)
        assert ops.pause_container(name, **SCOPE).desired == "pause"
        observed = env.cluster.wait_state(name, "paused", agent=env.node.agent)
        state = inspect(observed["container_id"])["State"]
        assert (state["Paused"], state["Running"]) == (True, True)
        after = ops.get("container", name, **SCOPE)
        assert after.node == before.node == env.node.name
        assert after.computed == before.computed  # GPUs, CPUs, millicores still booked
        assert after.uid == before.uid
        with pytest.raises(Conflict, match="paused"):
            ops.exec(name, ["true"], **SCOPE)  # a frozen container runs no shell
        assert ops.pause_container(name, **SCOPE).desired == "pause"  # idempotent

    done = env.dora(*scoped("resume", "c", name), user="admin")
    assert (done.returncode, done.stdout) == (0, f"container/{name} resumed\n".encode())
    observed = env.cluster.wait_state(name, "running", agent=env.node.agent)
    state = inspect(observed["container_id"])["State"]
    assert (state["Paused"], state["Running"]) == (False, True)
    with Client(env.api.url, users["ops"]) as ops:
        assert ops.exec(name, ["echo", "thawed"], **SCOPE).stdout == b"thawed\n"
        reasons = [e.reason for e in ops.events("container", name, **SCOPE)]
        assert {"Paused", "Resumed"} <= set(reasons), reasons

    done = env.dora(*scoped("pause", "c", name), user="admin")
    assert (done.returncode, done.stdout) == (0, f"container/{name} paused\n".encode())
    env.cluster.wait_state(name, "paused", agent=env.node.agent)


def test_pause_is_refused_when_the_container_or_its_workload_is_going(
    env: ExecEnv, users: dict[str, str]
) -> None:
    name = env.run_container("sleep 3600")
    workload = name.rsplit(".", 1)[0]
    with Client(env.api.url, users["ops"]) as ops:
        with pytest.raises(Conflict, match="no longer exists"):
            ops.pause_container(name, **SCOPE)  # no Workload record: an orphan
        apply(env.cluster.admin, workload_doc(workload, workspace=WORKSPACE))
        assert env.cluster.admin.post(f"/v1/workloads/{workload}/pause", params=SCOPE).is_success
        with pytest.raises(Conflict, match="resume the workload"):
            ops.pause_container(name, **SCOPE)
        with pytest.raises(Conflict, match="resume the workload"):
            ops.resume_container(name, **SCOPE)
        assert env.cluster.admin.post(f"/v1/workloads/{workload}/resume", params=SCOPE).is_success
        exited = env.run_container(["sh", "-c", "true"], wait="exited")
        apply(env.cluster.admin, workload_doc(exited.rsplit(".", 1)[0], workspace=WORKSPACE))
        with pytest.raises(Conflict, match="only a running container"):
            ops.pause_container(exited, **SCOPE)
        env.cluster.update(name, desired="drain")
        with pytest.raises(Conflict, match="being deleted"):
            ops.pause_container(name, **SCOPE)
    done = env.dora(*scoped("pause", "c", name), user="admin")
    assert done.returncode == 1 and b"being deleted" in done.stderr, done.stderr


def test_a_tail_out_of_range_is_a_400_naming_the_field(env: ExecEnv, target: str) -> None:
    """Found by the schemathesis run: 8 digits pass the query pattern, but more than
    10 million lines is refused — with a 400, not a 500."""
    with env.http() as http:
        r = http.get(f"/v1/containers/{target}/logs", params={**SCOPE, "tail": "26069909"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "tail" and "line count" in r.json()["message"]


def test_no_container_token_reaches_the_api_log(env: ExecEnv) -> None:
    """Runs last: every container token above went through the shell URL (which
    uvicorn logs) or a reply; the log shows the URL with the token masked."""
    log = env.api.log_text()
    assert "token=[token]" in log
    assert "event=container_token" in log
    printed = env.api.admin_tokens_printed()
    assert not leaked_tokens(log, admin_token=printed[0] if printed else None)
